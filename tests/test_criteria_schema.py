"""The criteria tables' schema: every shipped table loads; an invalid table is refused with the file,
the rule id and the key path of every problem."""

from __future__ import annotations

import copy
from importlib import resources

import pytest

from cartlab.criteria import CriteriaError, load_raw, load_table, parse_table
from cartlab.criteria.status import PACKAGES
from cartlab.errors import InputError

SOURCE = "cartlab/grading/criteria/astct_crs_2019.yaml"


def shipped() -> list[tuple[str, str]]:
    return [(pkg, p.name[:-5]) for pkg in PACKAGES
            for p in resources.files(pkg).joinpath("criteria").iterdir() if p.name.endswith(".yaml")]


@pytest.mark.parametrize("package, name", shipped())
def test_every_shipped_table_loads(package, name):
    t = load_table(name, package)
    assert t.version and t.citation and t.status
    for rules in t.rule_sets.values():
        for r in rules:
            assert r.citation and t.status_of(r)


def test_ported_tables_have_their_rule_sets():
    assert set(load_table("astct_crs_2019").rule_sets) == {"fever", "hypotension", "hypoxia", "other_cause", "death"}
    assert set(load_table("astct_icans_2019").rule_sets) == {"ice", "capd", "events"}
    for name in ("eln2022_aml", "all_car_t"):
        assert set(load_table(name, "cartlab.response").rule_sets) == {"categories", "relapse"}
    for name in ("icaht_2023", "t_icaht_2025"):
        assert set(load_table(name).rule_sets) == {"early", "late"}


def crs() -> dict:
    return copy.deepcopy(load_raw("astct_crs_2019"))


def problems(data: dict) -> list[tuple[str, str]]:
    with pytest.raises(CriteriaError) as exc:
        parse_table(data, SOURCE)
    assert str(exc.value).startswith(f"{SOURCE}: ")
    assert isinstance(exc.value, InputError)
    return exc.value.problems


def test_bad_operator_names_the_rule_and_the_key_path():
    data = crs()
    data["rule_sets"]["hypoxia"][1]["when"][0]["op"] = "=>"
    [(where, msg)] = problems(data)
    assert where == "rule_sets.hypoxia[1] (crs.hypoxia.high_flow) when[0].op"
    assert "'<'" in msg and "'between'" in msg


def test_misspelt_key_in_a_nested_condition():
    data = crs()
    data["rule_sets"]["fever"][0]["when"] = [{"any": [{"feature": "tmax_c", "op": ">=", "value": 38},
                                                       {"feature": "tmax_c", "op": ">=", "valeu": 39}]}]
    found = dict(problems(data))
    assert "rule_sets.fever[0] (crs.fever) when[0].any[1].valeu" in found
    assert "rule_sets.fever[0] (crs.fever) when[0].any[1].value" in found  # and the required key is missing


def test_between_needs_explicit_inclusivity():
    data = crs()
    data["rule_sets"]["hypotension"][2]["when"] = [{"feature": "sbp_min_mmhg", "op": "between", "value": [60, 90]}]
    [(where, msg)] = problems(data)
    assert where == "rule_sets.hypotension[2] (crs.hypotension.no_vasopressor) when[0]"
    assert "closed" in msg


def test_a_rule_needs_a_citation_and_a_known_status():
    data = crs()
    del data["rule_sets"]["death"][0]["citation"]
    data["rule_sets"]["other_cause"][0]["status"] = "checked"
    found = dict(problems(data))
    assert "Field required" in found["rule_sets.death[0] (crs.death) citation"]
    assert "'verified'" in found["rule_sets.other_cause[0] (crs.other_cause) status"]


def test_unknown_option_reference_and_duplicate_id():
    data = crs()
    data["rule_sets"]["fever"][0]["when"][0]["value"] = "$fever_cutoff"
    [(where, msg)] = problems(data)
    assert where == "rule_sets.fever[0] (crs.fever)" and "fever_cutoff" in msg
    data = crs()
    data["rule_sets"]["hypoxia"][2]["id"] = "crs.hypoxia.high_flow"
    [(where, msg)] = problems(data)
    assert where == "rule_sets.hypoxia[2] (crs.hypoxia.high_flow)" and "twice" in msg


def test_count_value_and_list_operators():
    data = crs()
    data["rule_sets"]["hypoxia"][0]["when"] = [
        {"count": [{"feature": "o2_level", "op": ">=", "value": 4}], "op": ">=", "value": "two"},
        {"feature": "o2_device", "op": "in", "value": "cpap"},
        {"feature": "o2_level", "op": ">=", "value": [1, 2]},
    ]
    found = dict(problems(data))
    key = "rule_sets.hypoxia[0] (crs.hypoxia.positive_pressure) when"
    assert "number or an option" in found[f"{key}[0]"]
    assert "needs a list" in found[f"{key}[1]"]
    assert "not a list" in found[f"{key}[2]"]


def test_header_is_required():
    data = crs()
    del data["status"]
    assert dict(problems(data))["status"] == "Field required"
