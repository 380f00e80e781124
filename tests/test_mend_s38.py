"""Session 38 mend of the session-diff review (/work/notes/review38_diff1/REPORT.md; fix report
/work/notes/fix38_mend1/REPORT.md): F1 a CRS death on the first CRS day, F2 rows CRS does not count,
F3 CAR-T names, F5 kinetics.analyte, F6 the lymphodepletion alias table in the protocol engine, F7 an
end at 00:00 for transfusions / G-CSF, F8 wording.

Expected values are derived by hand from the standards' text, never from cartlab's output:
- ASTCT 2019 (Lee DW et al., BBMT 2019;25:625) Table 1: death due to CRS = grade 5; fever >= 38 C = 1.
  Episodes (criteria crs.conv.episodes): the first CRS day of a subject opens episode 1.
- study-format.md "Derivation conventions": an intervention covers start_day to end_day inclusive;
  an end written at exactly 00:00 ended at the start of that day (grading.common.last_covered_day).
- Day numbers: infusion 2024-01-01T14:00 is day 0; 2024-01-04T00:00 is day 3.0.
"""

from __future__ import annotations

import csv
import types
import warnings

import polars as pl
import pytest

from cartlab.grading.count_recovery import _transfusions_unknown
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_episodes, derive_crs_summary
from cartlab.grading.hemato_common import transfusion_days
from cartlab.grading.hemato_late import gcsf_days_text
from cartlab.io import read_study
from cartlab.kinetics.agents import car_t_agent_expr, is_car_t_agent
from cartlab.kinetics.car import CarKineticsOptions, derive_car_kinetics
from cartlab.model import Study, conform
from cartlab.protocol import derive_deviations, load_protocol
from cartlab.protocol.eligibility import first_lymphodepletion_days
from protocol_helpers import frame

SUBJECT = {"subject_id": "S1", "sex": "M", "age_years": 50, "weight_kg": 70, "disease": "LBCL",
           "infusion_datetime": "2024-01-01T14:00:00"}


def _write(path, rows, header):
    cols = list(dict.fromkeys([*header, *(k for r in rows for k in r)]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if r.get(k) is None else r[k] for k in cols})


def crs_study(tmp_path, obs=(), iv=(), ev=()):
    _write(tmp_path / "subjects.csv", [SUBJECT], list(SUBJECT))
    _write(tmp_path / "doses.csv", [{"subject_id": "S1", "day": 0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg"}],
           ["subject_id", "day", "agent", "dose", "unit"])
    _write(tmp_path / "observations.csv", list(obs), ["subject_id", "day", "param", "value", "unit"])
    _write(tmp_path / "interventions.csv", list(iv),
           ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit", "indication"])
    _write(tmp_path / "events.csv", list(ev), ["subject_id", "day", "event", "attribution"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_study(tmp_path)


def temp(day, v):
    return {"subject_id": "S1", "day": day, "param": "TEMP", "value": v, "unit": "C"}


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


# ---- F1: a CRS death on the subject's first CRS day is episode 1 ---------------------------------------

def test_crs_death_on_the_first_crs_day_is_episode_1(tmp_path):
    """Afebrile days 1-3 (grade 0), death attributed to CRS on day 5: ASTCT grade 5 on day 5, the
    subject's first CRS day, so it opens episode 1 (old code: episode 0 via null & False)."""
    st = crs_study(tmp_path, [temp(d, 37.0) for d in (1, 2, 3)],
                   ev=[{"subject_id": "S1", "day": 5, "event": "death", "attribution": "CRS"}])
    daily = quiet(derive_crs_daily, st)
    d5 = daily.filter(pl.col("day") == 5).row(0, named=True)
    assert (d5["grade"], d5["episode"]) == (5, 1)
    ep = quiet(derive_crs_episodes, st)
    assert ep["episode"].to_list() == [1]
    assert quiet(derive_crs_summary, st, daily=daily)["crs_n_episodes"].to_list() == [1]


# ---- F2: a row CRS does not count adds no graded day under observed_days=vitals -------------------------

ICANS_DEX = {"subject_id": "S1", "start_day": 8, "end_day": 9, "category": "corticosteroid",
             "agent": "dexamethasone", "dose": 10, "dose_unit": "mg", "indication": "ICANS"}
ZERO_NE = {"subject_id": "S1", "start_day": 8, "end_day": 8, "category": "vasopressor",
           "agent": "norepinephrine", "dose": 0, "dose_unit": "ug/kg/min", "indication": "CRS"}


@pytest.mark.parametrize("row", [ICANS_DEX, ZERO_NE], ids=["icans_steroid", "dose0_vasopressor"])
def test_not_counted_rows_add_no_graded_day_by_default(tmp_path, row):
    """TEMP 37.0 on days 1-2, nothing else CRS counts (a steroid for ICANS / a vasopressor dose 0):
    with observed_days=vitals only days 1 and 2 are graded (grade 0 both, afebrile), so the subject's
    grade max is 0 and no later day keeps the resolution open (review probe /tmp/rv38_1_p3)."""
    st = crs_study(tmp_path, [temp(1, 37.0), temp(2, 37.0)], [row])
    daily = quiet(derive_crs_daily, st)
    assert daily["day"].to_list() == [1, 2]
    s = quiet(derive_crs_summary, st, daily=daily).row(0, named=True)
    assert s["crs_grade_astct_max"] == 0 and s["crs_resolution_day_latest"] is None


def test_not_counted_row_days_are_graded_with_observed_days_any_row(tmp_path):
    """observed_days=any_row grades every day with a row of the subject: days 8 and 9 of the ICANS
    steroid are graded (no temperature: grade 0 up to 2, fever unknown and hypotension unknown)."""
    st = crs_study(tmp_path, [temp(1, 37.0), temp(2, 37.0)], [ICANS_DEX])
    daily = quiet(derive_crs_daily, st, CrsOptions(observed_days="any_row"))
    assert {8, 9} <= set(daily["day"].to_list())
    assert daily.filter(pl.col("day") == 8)["grade"].to_list() == [0]


# ---- F3: CAR-T names --------------------------------------------------------------------------------

CAR_T = ["CAR-T", "CAR T", "CART", "CARTs", "CAR-Ts", "CAR-T cells", "CAR-Tcells", "UCART19", "UCART22",
         "huCART19-IL18", "CART19", "CD7 CAR-T", "car_t", "Kymriah", "axi-cel", "axicabtagene ciloleucel",
         "obecabtagene autoleucel"]
NOT_CAR_T = ["carteolol", "cartilage", "tabelecleucel", "lifileucel", "afami-cel", "fludarabine", "cyclophosphamide"]


def test_car_t_spellings_positive_and_negative():
    """Every spelling of the word CAR-T (a letter before it as in UCART, a plural or 'cells' after it)
    and the -cabtagene INNs / marketed products are CAR-T; carteolol (beta blocker), cartilage and the
    non-CAR -leucel cell therapies are not (review 38 diff1 F3; tabelecleucel: EBV-specific T cells)."""
    assert [is_car_t_agent(a) for a in CAR_T] == [True] * len(CAR_T)
    assert [is_car_t_agent(a) for a in NOT_CAR_T] == [False] * len(NOT_CAR_T)
    col = pl.DataFrame({"a": CAR_T + NOT_CAR_T}).select(car_t_agent_expr(pl.col("a")))["a"].to_list()
    assert col == [True] * len(CAR_T) + [False] * len(NOT_CAR_T)


# ---- F5: kinetics.analyte=NAME ------------------------------------------------------------------------

def kin_study(analytes: dict[str, str]) -> Study:
    obs, n = [], 0
    for sid, an in analytes.items():
        for day, v in ((7, 1000.0), (14, 500.0), (28, 100.0)):
            n += 1
            obs.append({"subject_id": sid, "param": "CARCOPY", "unit": "copies/ug", "lloq": 20.0, "value": v,
                        "day": float(day), "analyte": an, "src_file": "observations.csv", "src_row": n + 1})
    d = [{"subject_id": sid, "day": 0.0, "agent": "CAR-T", "dose": 1e6, "unit": "cells/kg", "src_file": "doses.csv",
          "src_row": i + 2} for i, sid in enumerate(analytes)]
    return Study(study_id="t", subjects=conform(pl.DataFrame({"subject_id": list(analytes)}), "subjects"),
                 observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
                 doses=conform(pl.DataFrame(d), "doses"))


def test_subject_without_the_analyte_gets_a_not_evaluable_row():
    """A has 3 CARCOPY rows of A1, B 3 of A2; kinetics.analyte=A1: B has no A1 sample, so it is not
    evaluable (NCA empty: missing, not 0) and its reason names its 3 rows of A2 (old: B absent)."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = derive_car_kinetics(kin_study({"A": "A1", "B": "A2"}), CarKineticsOptions(analyte="A1"))
    assert out["subject_id"].to_list() == ["A", "B"]
    b = out.filter(pl.col("subject_id") == "B").row(0, named=True)
    assert b["cmax"] is None and b["auc_window"] is None
    assert "no A1 CAR sample: 3 CARCOPY row(s) of analyte A2 left out (kinetics.analyte=A1)" in b["reason"]
    assert out.filter(pl.col("subject_id") == "A")["cmax"].to_list() == [1000.0]
    assert not any("no CARCOPY rows of analyte" in str(x.message) for x in w)  # A has A1: no such warning


def test_analyte_no_subject_has_warns_naming_the_analytes_present():
    """A misspelt analyte (A9): neither subject has it; both not evaluable and one warning naming the
    analytes present (A1, A2)."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = derive_car_kinetics(kin_study({"A": "A1", "B": "A2"}), CarKineticsOptions(analyte="A9"))
    assert out["subject_id"].to_list() == ["A", "B"] and out["cmax"].to_list() == [None, None]
    msgs = [str(x.message) for x in w]
    assert any("no CARCOPY rows of analyte A9; analytes present: A1, A2" in m for m in msgs), msgs


# ---- F6: the protocol engine reads lymphodepletion agents through the alias table -----------------------

def test_first_lymphodepletion_day_reads_aliases():
    """'Fludara' and 'fludarabine phosphate' are fludarabine (ld_agents.yaml aliases): the first LD
    dose of S1 is day -5, of S2 day -4; a dose of 'R-GemOx' is none (S3 not listed)."""
    proto = types.SimpleNamespace(lymphodepletion=[types.SimpleNamespace(agent="fludarabine")])
    d = pl.DataFrame({"subject_id": ["S1", "S1", "S2", "S3"], "day": [-5.0, -4.0, -4.0, -4.0],
                      "agent": ["Fludara", "Fludara", "fludarabine phosphate", "R-GemOx"]})
    assert first_lymphodepletion_days(d, proto) == {"S1": -5.0, "S2": -4.0}


def test_deviations_match_an_alias_to_the_protocols_agent():
    """NCT04762485 (decitabine days -6..-3, fludarabine and cyclophosphamide days -5..-3): a study that
    records fludarabine as 'Fludara' and cyclophosphamide as 'Cytoxan' on the planned days has no missed
    dose and no unplanned agent for them (old: 3 missed + 6 unplanned rows)."""
    nct = load_protocol("nct04762485")
    rows = [{"day": float(d), "agent": "decitabine", "dose": 50.0, "unit": "mg"} for d in (-6, -5, -4, -3)]
    rows += [{"day": float(d), "agent": "Fludara", "dose": 30.0, "unit": "mg/m2"} for d in (-5, -4, -3)]
    rows += [{"day": float(d), "agent": "Cytoxan", "dose": 300.0, "unit": "mg/m2"} for d in (-5, -4, -3)]
    subj = frame("subjects", [{}], subject_id="S1", sex="M", age_years=40.0, weight_kg=50.0, height_cm=170.0,
                 disease="AML", target="CD7", last_followup_day=60.0, source="observed")
    st = Study(study_id="T", subjects=subj, doses=frame("doses", rows, subject_id="S1", source="observed"),
               observations=frame("observations", [], subject_id="S1"), events=frame("events", [], subject_id="S1"))
    res = quiet(derive_deviations, st, nct)
    bad = res.filter(pl.col("category").is_in(["missed_dose", "unplanned_agent"]))
    assert bad.filter(pl.col("item").str.to_lowercase().is_in(["fludarabine", "cyclophosphamide", "fludara",
                                                                 "cytoxan"])).height == 0


# ---- F7: an end at exactly 00:00 for transfusions and G-CSF -----------------------------------------------

def _iv(**kw) -> types.SimpleNamespace:
    base = {"subject_id": "S1", "start_day": 2.0, "end_day": 3.0, "end_datetime": "2024-01-04T00:00:00",
            "category": "platelet_transfusion", "agent": None, "src_file": "interventions.csv", "src_row": 2}
    return types.SimpleNamespace(interventions=pl.DataFrame([{**base, **kw}]))


def test_transfusion_ending_at_midnight_covers_up_to_the_day_before():
    """Start day 2, end 2024-01-04T00:00 (day 3.0): it ended at the start of day 3, so days {2};
    a date-only end 2024-01-04 is 'some time that day': days {2, 3}."""
    assert transfusion_days(_iv(), ["platelet_transfusion"])["d"].to_list() == [2]
    assert transfusion_days(_iv(end_datetime="2024-01-04"), ["platelet_transfusion"])["d"].to_list() == [2, 3]


def test_gcsf_ending_at_midnight_is_named_on_its_last_covered_day():
    """G-CSF from day 2 ending 00:00 of day 3: 'day 2' (covered day 2 only); window days 3-30 does not
    overlap it (old: 'days 2-3' and named for a window from day 3)."""
    st = _iv(category="gcsf", agent="filgrastim")
    assert gcsf_days_text(st, 0.0, 30.0)["_gcsf"].to_list() == ["G-CSF (filgrastim) on day 2 (interventions.csv:2)"]
    assert gcsf_days_text(st, 3.0, 30.0).height == 0


# ---- F8: no ".;" in the count-recovery reason ---------------------------------------------------------------

def test_transfusions_unknown_reason_has_no_dot_before_the_semicolon():
    """A recovered platelet row (reason ending in '.') with interventions.csv absent: the appended
    '; platelet transfusions unknown ...' follows the text without a '.' before it."""
    rec = pl.DataFrame({"status": ["recovered"], "day": [14.0], "day_min": [14.0], "day_max": [14.0],
                        "reason": ["20 x10^9/L on 7 days, no platelet transfusion from day 7 -> recovery day 14."]})
    r = _transfusions_unknown(rec, 7)["reason"][0]
    assert ".;" not in r
    # session 40 (review 40 newuser B4): the reason opens with the open range, then the text as measured
    assert r.startswith("not evaluable: the recovery day is day 14 or later (no later day excluded: platelet "
                        "transfusions unknown, interventions.csv not given); as measured: 20 x10^9/L on 7 days, no "
                        "platelet transfusion recorded from day 7 -> earliest possible recovery day 14; platelet "
                        "transfusions unknown")
