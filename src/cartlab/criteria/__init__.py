"""The criteria language and the criteria tables as one body of rules.

* :mod:`cartlab.criteria.model` — the schema of a criteria table (pydantic), validated on load
  (:func:`load_table`): rule sets of rules with conditions (``all`` / ``any`` / ``not`` /
  ``count`` / ``missing`` / ``{feature, op, value}``), a ``citation`` and a ``status`` per row.
* :mod:`cartlab.criteria.compile` — conditions and rule sets compiled to polars expressions
  (:class:`Decision`: the established outcome, the outcomes still possible and the missing
  inputs, three-valued); :mod:`cartlab.criteria.direct` — the same evaluated in pure Python (the
  reference of the property tests).
* :mod:`cartlab.criteria.options` — :class:`CriteriaOptions`, the base class of the engines'
  options (frozen, validated, resolved against the table's ``defaults``, documented from them).
* :mod:`cartlab.criteria.status` — where each rule id lives and how well it is verified.

Every criteria table (``cartlab/*/criteria/*.yaml``) carries a ``status`` per row or per table:

* ``verified`` — read in the primary source (or the publisher's own table page);
* ``verified_secondary`` — read in a secondary source (a reproduction, a calculator, a reference
  implementation such as admiral);
* ``convention`` — a documented cartlab choice where the standard is silent (nothing to verify);
* ``partially_verified``, ``proxy``, ``unverified`` — not (fully) checked against a source: results
  that rest on such a rule are marked wherever they are shown (:data:`UNSETTLED`).

:func:`rule_status` gives the status of a rule id as an engine writes it; :func:`with_rule_status`
adds ``rule_status`` columns to an engine's output.
"""

from cartlab.criteria.compile import Compiler, Decision, Range, decision, gated
from cartlab.criteria.model import (
    RULES,
    CriteriaError,
    CriteriaTable,
    Rule,
    describe,
    load_raw,
    load_table,
    parse_table,
    render,
)
from cartlab.criteria.options import CriteriaOptions, option_docs, options_markdown
from cartlab.criteria.status import (
    STATUS_ORDER,
    UNSETTLED,
    RuleInfo,
    rule_index,
    rule_status,
    rules_in,
    with_rule_status,
)

__all__ = [
    "RULES", "STATUS_ORDER", "UNSETTLED", "Compiler", "CriteriaError", "CriteriaOptions", "CriteriaTable",
    "Decision", "Range", "Rule", "RuleInfo", "decision", "describe", "gated", "load_raw", "load_table", "option_docs",
    "options_markdown", "parse_table", "render", "rule_index", "rule_status", "rules_in", "with_rule_status",
]
