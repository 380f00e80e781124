"""The status column beside a rule column: ``rule_status`` for the lower-case tables, ``RULESTAT``
(the ADaM name `cartlab export --adam` already used) beside an upper-case ``RULE``."""
import polars as pl

from cartlab.criteria import with_rule_status
from cartlab.criteria.status import status_column


def test_status_column_names():
    assert status_column("rule") == "rule_status"
    assert status_column("early_rule") == "early_rule_status"
    assert status_column("RULE") == "RULESTAT"


def test_adam_style_table_gets_rulestat_not_mixed_case():
    f = pl.DataFrame({"RULE": ["icaht.early.g3_anc500_ge14", None]})
    out = with_rule_status(f)
    assert "RULESTAT" in out.columns and "RULE_status" not in out.columns
    # the ICAHT table's status of this row (criteria file) is not empty; the empty rule gives an empty status
    assert out["RULESTAT"][0] is not None and out["RULESTAT"][1] is None
    assert with_rule_status(f.head(0)).columns == ["RULE", "RULESTAT"]
