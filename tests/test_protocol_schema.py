"""Protocol files: shipped protocols load; every kind of invalid file gives a clear error naming
the file, the line and the key path, and nothing is returned half-read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cartlab.protocol import ProtocolError, load_protocol, parse_protocol, shipped_protocols
from cartlab.protocol.schema import Protocol

SHIPPED = Path(__file__).resolve().parents[1] / "src" / "cartlab" / "protocol" / "protocols"

MINIMAL = """\
schema: cartlab-protocol/1
id: mini
title: Minimal protocol
version: "1"
source: reconstructed
citation: test
lymphodepletion:
  - agent: fludarabine
    dose: 30
    unit: mg/m2
    days: [-5, -4, -3]
    citation: test
car_t:
  product: test CAR-T
  bands:
    - unit: cells/kg
      target: 1.0e6
      min: 0.5e6
      max: 2.0e6
      citation: test
  infusions:
    - {day: 0, fraction: 1.0}
  citation: test
"""


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ProtocolError) as ei:
        parse_protocol(text, "bad.yaml")
    assert str(ei.value).startswith("bad.yaml: ")
    return ei.value.problems


def test_minimal_protocol_loads():
    p = parse_protocol(MINIMAL, "mini.yaml")
    assert isinstance(p, Protocol)
    assert p.id == "mini" and p.lymphodepletion[0].days == [-5, -4, -3]
    assert p.first_lymphodepletion_day == -5
    assert [r["day"] for r in p.schedule()] == [-5, -4, -3, 0]


def test_shipped_protocols_are_valid_and_addressable_by_id():
    ids = shipped_protocols()
    assert {"nct04762485", "tisagenlecleucel_ball", "axicabtagene_lbcl"} <= set(ids)
    for f in SHIPPED.glob("*.yaml"):
        p = load_protocol(f)  # by path
        assert p.id == f.stem, "a shipped file is named after its id"
        assert p.id == p.id.lower()
        assert load_protocol(p.id).id == p.id  # by id
        assert load_protocol(p.id.upper()).id == p.id  # ids are case-insensitive
        # every lymphodepletion agent and every CAR-T band carries a citation
        assert all(a.citation for a in p.lymphodepletion)
        assert all(b.citation for b in p.car_t.bands)


def test_nct04762485_is_the_papers_regimen():
    p = load_protocol("nct04762485")
    ld = {a.agent: (a.dose, a.unit, a.days) for a in p.lymphodepletion}
    assert ld == {
        "decitabine": (50, "mg", [-6, -5, -4, -3]),
        "fludarabine": (30, "mg/m2", [-5, -4, -3]),
        "cyclophosphamide": (300, "mg/m2", [-5, -4, -3]),
    }
    (band,) = p.car_t.bands
    assert (band.unit, band.target, band.min, band.max) == ("cells/kg", 5e6, 0.5e6, 10e6)
    assert [(i.day, i.fraction) for i in p.car_t.infusions] == [(0, 0.2), (2, 0.8)]
    assert p.response.orr_categories == ["CR", "CRi", "MLFS", "PR"]
    crit = {c.id: c for c in p.eligibility}
    assert crit["age"].value == [12, 65] and crit["age"].op == "between"
    assert crit["cd7_on_blasts"].op == ">" and crit["cd7_on_blasts"].value == 30
    assert crit["ecog"].op == "<=" and crit["ecog"].value == 2


def test_unknown_id_lists_the_shipped_ones():
    with pytest.raises(ProtocolError) as ei:
        load_protocol("nct00000000")
    assert "nct04762485" in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(ProtocolError, match="no such protocol file"):
        load_protocol(tmp_path / "nope.yaml")


def test_not_yaml():
    (where, msg), = _problems("schema: cartlab-protocol/1\nid: [unclosed\n")
    assert "not valid YAML" in msg and re.match(r"line \d+", where)


def test_top_level_must_be_a_mapping():
    (_, msg), = _problems("- a\n- b\n")
    assert "mapping" in msg


def test_wrong_schema_string():
    (where, msg), = _problems(_edit(MINIMAL, "cartlab-protocol/1", "cartlab-protocol/9"))
    assert "schema must be 'cartlab-protocol/1'" in msg and where.startswith("line 1")


def test_missing_required_key_names_it():
    text = MINIMAL.split("car_t:")[0]
    probs = _problems(text)
    assert any(w.endswith("car_t") and "missing" in m for w, m in probs)


def test_unknown_key_is_a_typo_with_its_line():
    text = _edit(MINIMAL, "    days: [-5, -4, -3]\n", "    days: [-5, -4, -3]\n    dayz: [1]\n")
    (where, msg), = _problems(text)
    line = text.splitlines().index("    dayz: [1]") + 1
    assert where == f"line {line}, lymphodepletion[0].dayz"
    assert "unknown key" in msg


def test_bad_dose_unit():
    (where, msg), = _problems(_edit(MINIMAL, "unit: mg/m2", "unit: mg/m^2"))
    assert "lymphodepletion[0].unit" in where and "mg/m^2" in msg


@pytest.mark.parametrize("dose", ["0", "-30"])
def test_non_positive_dose(dose):
    (where, msg), = _problems(_edit(MINIMAL, "dose: 30", f"dose: {dose}"))
    assert "lymphodepletion[0].dose" in where and "greater than 0" in msg


def test_repeated_days():
    (where, msg), = _problems(_edit(MINIMAL, "days: [-5, -4, -3]", "days: [-5, -5, -3]"))
    assert "days" in where and "repeat" in msg


def test_fractions_must_add_to_one():
    text = _edit(MINIMAL, "    - {day: 0, fraction: 1.0}", "    - {day: 0, fraction: 0.2}\n    - {day: 2, fraction: 0.7}")
    (where, msg), = _problems(text)
    assert "car_t" in where and "add up to 0.9" in msg


def test_target_outside_range():
    (where, msg), = _problems(_edit(MINIMAL, "target: 1.0e6", "target: 3.0e6"))
    assert "car_t.bands[0]" in where and "outside" in msg


def test_overlapping_weight_bands():
    text = _edit(MINIMAL, """    - unit: cells/kg
      target: 1.0e6""", """    - unit: cells
      up_to_kg: 60
      min: 1.0e7
      max: 1.0e8
      citation: test
    - unit: cells/kg
      above_kg: 50
      target: 1.0e6""")
    (where, msg), = _problems(text)
    assert "overlap" in msg


def test_unknown_renal_rule():
    text = _edit(MINIMAL, "    days: [-5, -4, -3]\n", "    days: [-5, -4, -3]\n    renal_adjustment: made_up\n")
    (_, msg), = _problems(text)
    assert "unknown renal_adjustment 'made_up'" in msg and "fludarabine_label" in msg


def test_unknown_monitoring_param():
    text = MINIMAL + """monitoring:
  - id: labs
    params: [CRP, NOTAPARAM]
    days: [1]
    citation: test
"""
    (where, msg), = _problems(text)
    assert "monitoring[0]" in where and "NOTAPARAM" in msg


def test_eligibility_criterion_needs_exactly_one_source():
    text = MINIMAL + """eligibility:
  - id: age
    text: adult
    field: age_years
    param: ALT
    op: ">="
    value: 18
"""
    (where, msg), = _problems(text)
    assert "eligibility[0]" in where and "exactly one of field, param, event" in msg


def test_between_needs_low_high():
    text = MINIMAL + """eligibility:
  - id: age
    text: adult
    field: age_years
    op: between
    value: [65, 12]
"""
    (_, msg), = _problems(text)
    assert "low <= high" in msg


def test_duplicate_criterion_ids():
    crit = """  - id: age
    text: adult
    field: age_years
    op: ">="
    value: 18
"""
    (_, msg), = _problems(MINIMAL + "eligibility:\n" + crit + crit)
    assert "eligibility ids repeat: age" in msg


def test_criterion_unit_must_be_known():
    text = MINIMAL + """eligibility:
  - id: bili
    text: bilirubin
    param: BILI
    op: "<="
    value: 2
    unit: furlongs
"""
    (_, msg), = _problems(text)
    assert "furlongs" in msg


def test_every_problem_is_reported_at_once():
    text = _edit(_edit(MINIMAL, "dose: 30", "dose: -1"), "unit: mg/m2", "unit: grams")
    probs = _problems(text)
    assert len(probs) == 2


def test_round_trip_of_a_written_file(tmp_path):
    f = tmp_path / "mine.yaml"
    data = yaml.safe_load(MINIMAL)
    data["id"] = "mine"
    f.write_text(yaml.safe_dump(data), encoding="utf-8")
    p = load_protocol(str(f))
    assert p.id == "mine" and p.path == str(f)


# ---- property: any mutation of a valid file parses or raises ProtocolError, nothing else ---------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**9), st.floats(allow_nan=True),
                    st.text(max_size=12), st.lists(st.integers(-10, 10), max_size=3),
                    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


_BASE = yaml.safe_load(open(SHIPPED / "nct04762485.yaml", encoding="utf-8"))
_ALL_PATHS = [p for p in _paths(_BASE) if p]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(idx=st.integers(0, len(_ALL_PATHS) - 1), value=_VALUES, delete=st.booleans())
def test_property_mutated_protocols_parse_or_give_a_protocol_error(idx, value, delete):
    import copy

    data = copy.deepcopy(_BASE)
    path = _ALL_PATHS[idx]
    node = data
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    text = yaml.safe_dump(data, allow_unicode=True)
    try:
        p = parse_protocol(text, "mutated.yaml")
    except ProtocolError as exc:
        assert exc.problems and all(isinstance(w, str) and m for w, m in exc.problems)
        assert str(exc).startswith("mutated.yaml: ")
    else:
        assert isinstance(p, Protocol)
