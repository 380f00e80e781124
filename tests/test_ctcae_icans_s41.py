"""Session 41, review 41 (CTCAE v5 lab grading and ASTCT 2019 ICANS): F1-F10.

Expected values are worked out by hand from the quoted standards (CTCAE v5.0; ASTCT 2019, Lee et al.,
Table 4 and grade 5 as reproduced by MDedge 192202), never copied from cartlab's output.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.cli import app
from cartlab.cli.grading_io import ctcae_command
from cartlab.errors import InputError
from cartlab.grading.crs import CrsOptions, derive_crs_daily, derive_crs_summary
from cartlab.grading.ctcae import CtcaeOptions, ctcae_terms, derive_ctcae, grade_labs
from cartlab.grading.icans import IcansOptions, derive_icans_daily, derive_icans_episodes
from cartlab.grading.lab_worst import worst_labs
from cartlab.io import read_study
from cartlab.io.adam import export_adam
from grading_helpers import study


def _quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


def _table(tmp_path: Path, text: str, **kw) -> list[dict]:
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text(text)
    ctcae_command(src, out, **kw)
    return pl.read_csv(out, infer_schema_length=0).to_dicts()


def _folder(tmp_path: Path, obs: str, subjects: str = "subject_id,age_years,disease\nH1,40,AML\n",
            events: str | None = None) -> Path:
    d = tmp_path / "study"
    d.mkdir()
    (d / "subjects.csv").write_text(subjects)
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\n"
                                 + "".join(f"{s.split(',')[0]},0,CAR-T,1e6,cells/kg\n"
                                           for s in subjects.strip().splitlines()[1:]))
    (d / "observations.csv").write_text(obs)
    if events is not None:
        (d / "events.csv").write_text(events)
    return d


# ---------------------------------------------------------------------------------------------
# F4: a censored result on a grade boundary, at any signif_digits


@pytest.mark.parametrize("digits", [15, 8, 5])
def test_f4_censored_bound_on_a_threshold_is_inside_its_interval(tmp_path, digits):
    """CTCAE v5.0 Neutrophil count decreased G4 "<0.5 x 10e9/L": every value of "<0.5" is G4, whatever the
    comparison precision. ALT increased (baseline normal) G3 ">5.0 - 20.0 x ULN", G4 ">20.0 x ULN": ">200"
    with ULN 40 is above 5 x 40 = 200, so G3 at its bound and G4 at its far end: 3 up to 4.
    ANC "<1.0": G3 "<1.0 - 0.5" at the bound, G4 at 0: 3 up to 4."""
    rows = _table(tmp_path, "term,direction,aval,anrlo,anrhi,unit\n"
                  "ANC,L,<0.5,1.5,8,10^9/L\nANC,L,<1.0,1.5,8,10^9/L\nALT,H,>200,,40,U/L\n",
                  options=CtcaeOptions(signif_digits=digits))
    assert [(r["grade"], r["grade_max"]) for r in rows] == [("4", "4"), ("3", "4"), ("3", "4")]


def test_f4_derive_ctcae_censored_anc_at_8_digits(tmp_path):
    """The same in a study: NEUT "<500 /uL" (= <0.5 x 10^9/L) is G4 at signif_digits 8 (it was 3 up to 4)."""
    d = _folder(tmp_path, "subject_id,day,param,value,value_text,unit,lln,uln\nH1,5,NEUT,,<500,/uL,1500,8000\n")
    adlb = _quiet(derive_ctcae, _quiet(read_study, d), CtcaeOptions(signif_digits=8))
    row = adlb.filter(pl.col("param") == "NEUT").row(0, named=True)
    assert (row["ATOXGRL"], row["ATOXGRL_MAX"]) == (4, None)


def test_f4_just_inside_moves_one_unit_of_the_last_compared_digit():
    """0.5 at 8 significant digits: the largest 8-digit number below it is 0.49999999 (0.5 - 1e-8); at 15
    digits the old relative 1e-9 (0.5 - 5e-10) is larger than one unit (1e-15) and stays."""
    from cartlab.grading.censored import just_inside

    f = pl.DataFrame({"c": ["<", ">", "<=", None], "x": [0.5, 200.0, 0.5, 1.0]})
    at8 = f.select(just_inside(pl.col("c"), pl.col("x"), 8)).to_series().to_list()
    assert at8[0] == pytest.approx(0.5 - 1e-8, abs=1e-15) and at8[1] == pytest.approx(200 + 1e-5, abs=1e-12)
    assert at8[2:] == [0.5, None]
    at15 = f.select(just_inside(pl.col("c"), pl.col("x"), 15)).to_series().to_list()
    assert at15[0] == pytest.approx(0.5 * (1 - 1e-9), abs=1e-18)


# ---------------------------------------------------------------------------------------------
# F3: lln/uln (and value, baseline) are the reference range (aval, base)


def test_f3_lln_uln_are_read_as_the_reference_range(tmp_path):
    """CTCAE v5.0 Platelet count decreased G1 "<LLN - 75,000/mm3": 120 < 150 (lln) and >= 75 -> G1.
    ALT increased G1 ">ULN - 3.0 x ULN" (baseline normal, as admiral reads no baseline): 50 > 40 (uln)
    and <= 120 -> G1. The reason names the column read."""
    rows = _table(tmp_path, "term,direction,value,lln,uln,unit\nPLT,L,120,150,400,10^9/L\nALT,H,50,,40,U/L\n")
    assert [r["grade"] for r in rows] == ["1", "1"]
    assert "column 'lln' read as anrlo" in rows[0]["grade_reason"]
    assert "column 'uln' read as anrhi" in rows[1]["grade_reason"]


def test_f3_a_name_and_its_alias_together_are_refused(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("term,direction,aval,anrlo,lln,unit\nPLT,L,120,150,150,10^9/L\n")
    with pytest.raises(InputError, match="'anrlo' and 'lln' are the same input"):
        ctcae_command(src, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


# ---------------------------------------------------------------------------------------------
# F2: a parameter row in CTCAE's own conventional (US) or mmol/L column


def test_f2_parameter_row_in_the_us_column_unit(tmp_path):
    """CTCAE v5.0 Hypoglycemia G3 "<40 - 30 mg/dL; <2.2 - 1.7 mmol/L": 39.9 mg/dL < 40 is G3 on the mg/dL
    column; 39.9 / 18.016 = 2.215 mmol/L is not < 2.2, so G2 on the SI column (G2 "<55 - 40 mg/dL;
    <3.0 - 2.2 mmol/L"). Anemia G2 "<6.2 - 4.9 mmol/L; <100 - 80 g/L": 4.95 mmol/L is G2 on the mmol/L
    column; x 16.1145 = 79.77 g/L < 80 is G3 on the SI column. Default 'si': SI grade, the other named;
    'reported': the row's column."""
    text = "term,direction,aval,unit\nGlucose,L,39.9,mg/dL\nHb,L,4.95,mmol/L\n"
    si = _table(tmp_path, text)
    assert [r["grade"] for r in si] == ["2", "3"]
    assert "CTCAE's mg/dL column gives Hypoglycemia grade 3 for 39.9 mg/dL" in si[0]["grade_reason"]
    assert "CTCAE's mmol/L column gives Anemia grade 2 for 4.95 mmol/L" in si[1]["grade_reason"]
    (tmp_path / "out.csv").unlink()
    rep = _table(tmp_path, text, options=CtcaeOptions(criteria_units_by_row="reported"))
    assert [r["grade"] for r in rep] == ["3", "2"]
    assert "graded on CTCAE's mg/dL column" in rep[0]["grade_reason"]


# ---------------------------------------------------------------------------------------------
# F6: cartlab ctcae refuses the options of a study's grading


@pytest.mark.parametrize("opt", ["baseline_day=5", "ctcae.baseline_day0=calendar_day", "calcium_summary=split"])
def test_f6_study_only_options_are_refused(tmp_path, opt):
    src = tmp_path / "in.csv"
    src.write_text("term,direction,aval,anrlo,unit\nANC,L,0.4,1.5,10^9/L\n")
    res = CliRunner().invoke(app, ["ctcae", str(src), "--out", str(tmp_path / "o.csv"), "--set", opt])
    assert res.exit_code == 2 and "applies to cartlab analyze" in res.output
    assert not (tmp_path / "o.csv").exists()


def test_f6_a_table_option_is_still_taken(tmp_path):  # guard: passes on the old code too
    src = tmp_path / "in.csv"
    src.write_text("term,direction,aval,anrlo,unit\nK,L,3.4,3.5,mmol/L\n")
    res = CliRunner().invoke(app, ["ctcae", str(src), "--out", str(tmp_path / "o.csv"),
                                   "--set", "hypokalemia_symptomatic=false"])
    assert res.exit_code == 0
    # CTCAE v5.0 Hypokalemia G1 "<LLN - 3.0 mmol/L" (asymptomatic): 3.4 < 3.5 -> 1
    assert pl.read_csv(tmp_path / "o.csv")["grade"].to_list() == [1]


# ---------------------------------------------------------------------------------------------
# F5: clinical clauses as a range


def _clauses(options: CtcaeOptions) -> list[tuple]:
    frame = pl.DataFrame({"param": ["URATE", "K", "LIPASE"], "direction": ["H", "L", "H"],
                          "aval": [433.9, 3.4, 130.0], "anrlo": [None, 3.5, None], "anrhi": [428.0, None, 60.0],
                          "unit": ["umol/L", "mmol/L", "U/L"]})
    out = grade_labs(frame, None, options)
    return list(zip(out["grade"].to_list(), out["grade_max"].to_list()))


def test_f5_clinical_clauses_range():
    """CTCAE v5.0: Hyperuricemia G1 ">ULN without physiologic consequences", G3 ">ULN with physiologic
    consequences": urate above ULN -> 1 up to 3. Hypokalemia G1 "<LLN - 3.0 mmol/L", G2 "Symptomatic with
    <LLN - 3.0 mmol/L": 3.4 (LLN 3.5) -> 1 up to 2. Lipase increased G2 ">1.5 - 2.0 x ULN; >2.0 - 5.0 x ULN
    and asymptomatic", G3 ">2.0 - 5.0 x ULN with signs or symptoms": 130 = 2.17 x 60 -> 2 up to 3.
    The default (admiral's worst case) keeps 3, 2, 3 (guard: the old numbers)."""
    assert _clauses(CtcaeOptions(clinical_clauses="range")) == [(1, 3), (1, 2), (2, 3)]
    assert _clauses(CtcaeOptions()) == [(3, 3), (2, 2), (3, 3)]
    # a clause option set explicitly is kept: symptomatic hypokalemia is G2, settled
    assert _clauses(CtcaeOptions(clinical_clauses="range", hypokalemia_symptomatic=True))[1] == (2, 2)


def test_f5_range_names_the_clause(tmp_path):
    rows = _table(tmp_path, "term,direction,aval,anrhi,unit\nUrate,H,7.3,7.2,mg/dL\n",
                  options=CtcaeOptions(clinical_clauses="range"))
    assert (rows[0]["grade"], rows[0]["grade_max"]) == ("1", "3")
    assert "missing input: physiologic consequences" in rows[0]["grade_reason"]


def test_f5_derive_ctcae_range(tmp_path):
    """The same in a study: K 3.4 mmol/L (LLN 3.5) -> ATOXGRL 1, ATOXGRL_MAX 2."""
    d = _folder(tmp_path, "subject_id,day,param,value,value_text,unit,lln,uln\nH1,5,K,3.4,,mmol/L,3.5,5.1\n")
    adlb = _quiet(derive_ctcae, _quiet(read_study, d), CtcaeOptions(clinical_clauses="range"))
    row = adlb.filter(pl.col("param") == "K").row(0, named=True)
    assert (row["ATOXGRL"], row["ATOXGRL_MAX"]) == (1, 2) and "missing input: symptoms" in row["grade_reason"]


# ---------------------------------------------------------------------------------------------
# F8: the "why" of a range whose baseline status is unknown


def test_f8_worst_labs_names_the_unknown_baseline_status(tmp_path):
    """AST baseline 80 U/L without reference limits (BNRIND unknown), AST 130 U/L (ULN 40) on day 3.
    CTCAE v5.0 AST increased, baseline normal: G2 ">3.0 - 5.0 x ULN" (120-200: 130 is G2); baseline
    abnormal: G1 "1.5 - 3.0 x baseline" (120-240: 130 = 1.6 x 80 is G1). So 1 up to 2, and what leaves it
    open is the baseline's status (its reference limits), never "an input missing"."""
    d = _folder(tmp_path, "subject_id,day,param,value,value_text,unit,lln,uln\n"
                          "H1,-2,AST,80,,U/L,,\nH1,3,AST,130,,U/L,,40\n")
    adlb = _quiet(derive_ctcae, _quiet(read_study, d))
    w = worst_labs(adlb).filter(pl.col("term").str.starts_with("Aspartate")).row(0, named=True)
    assert (w["grade"], w["grade_max"]) == (1, 2)
    assert w["why"] == "baseline reference limits missing (BNRIND unknown)"


# ---------------------------------------------------------------------------------------------
# F7: ICE 0 without a LOC row is a range, never "read as not depressed"


def test_f7_ice_0_without_loc_does_not_say_read_as_not_depressed():
    """ASTCT 2019 Table 4: ICE 0 is grade 3, or 4 if the patient is unarousable: without a LOC row the
    day is 3 up to 4. The convention icans.conv.loc_missing reads a missing LOC as alert only for an ICE
    >= 1 or a CAPD score (ICE 5 below: grade 2, and the reason says it was read so)."""
    s = study(obs=[("A", 3, "ICE", 0.0), ("A", 5, "ICE", 5.0)],
              events=[{"subject_id": "A", "day": 20.0, "event": "relapse", "attribution": None}])
    d = {r["day"]: r for r in derive_icans_daily(s).iter_rows(named=True)}
    assert (d[3]["grade"], d[3]["grade_max"]) == (3, 4)
    assert "read as not depressed" not in d[3]["reason"]
    assert (d[5]["grade"], "read as not depressed" in d[5]["reason"]) == (2, True)


# ---------------------------------------------------------------------------------------------
# F1: an unattributed death during ICANS reaches ADAE; one reading option for CRS and ICANS


def _icans_death(attribution=None):
    """ICE 5 with LOC alert on day 4 (ASTCT 2019 Table 4: ICE 3-6 = grade 2), death on day 5."""
    return study(obs=[("A", 4, "ICE", 5.0), ("A", 4, "LOC", None, "alert")],
                 events=[{"subject_id": "A", "day": 5.0, "event": "death", "attribution": attribution}])


def test_f1_icans_death_day_is_attached_to_its_episode():
    """ASTCT 2019 grade 5: "Death due to ICANS when there is no other 'principle factor'": with no
    attribution the death on day 5, one day after ICANS day 4, could be ICANS: 0 up to 5 on day 5, attached
    to episode 1; the episode's reason names the missing attribution."""
    d = {r["day"]: r for r in derive_icans_daily(_icans_death()).iter_rows(named=True)}
    assert (d[4]["grade"], d[4]["episode"]) == (2, 1)
    assert (d[5]["grade"], d[5]["grade_max"], d[5]["episode"], d[5]["death_episode"]) == (0, 5, None, 1)
    ep = derive_icans_episodes(_icans_death()).row(0, named=True)
    assert ep["reason"].startswith("up to 5: death with no attribution recorded on day 5")


def test_f1_adae_icans_upper_bound_reaches_the_death(tmp_path):
    """ADAE: ATOXGR 2 (the episode's grade), ATOXGRUP 5 and ATOXRGFL Y, as ADSL ICNGRUP 5 / ICNGRFL Y."""
    s = _icans_death()
    out = tmp_path / "adam"
    _quiet(export_adam, Analysis(s, AnalysisOptions()), out, datasets=["ADSL", "ADAE"], formats=("csv",))
    ae = pl.read_csv(out / "adae.csv", infer_schema_length=0).filter(
        pl.col("AETERM") == "Immune effector cell-associated neurotoxicity syndrome").row(0, named=True)
    assert (ae["ATOXGR"], ae["ATOXGRUP"], ae["ATOXRGFL"]) == ("2", "5", "Y")
    assert "death attribution" in ae["REASON"]
    sl = pl.read_csv(out / "adsl.csv", infer_schema_length=0).row(0, named=True)
    assert (sl["ICNGRUP"], sl["ICNGRFL"]) == ("5", "Y")


def test_f1_icans_grade5_reading():
    """unattributed_death_reading=grade5 (the CRS engine's default reading): the death day is ICANS 5."""
    d = derive_icans_daily(_icans_death(), IcansOptions(unattributed_death_reading="grade5"))
    row = d.filter(pl.col("day") == 5).row(0, named=True)
    assert (row["grade"], row["grade_max"], row["episode"]) == (5, 5, 1)


def test_f1_crs_range_reading():
    """Fever 39.0 C on day 1 (ASTCT CRS grade 1), death on day 2 with no attribution: by default a CRS death
    (grade 5, crs.conv.unattributed_death); with unattributed_death_reading=range the day keeps its grade
    without the death (0: no data that day) up to 5, naming the missing attribution, attached to episode 1."""
    s = study(obs=[("A", 1, "TEMP", 39.0)], events=[{"subject_id": "A", "day": 2.0, "event": "death",
                                                     "attribution": None}])
    day2 = derive_crs_daily(s).filter(pl.col("day") == 2).row(0, named=True)
    assert day2["grade"] == 5
    opts = CrsOptions(unattributed_death_reading="range")
    day2 = derive_crs_daily(s, opts).filter(pl.col("day") == 2).row(0, named=True)
    assert (day2["grade"], day2["grade_max"], day2["death_episode"]) == (0, 5, 1)
    assert "death attribution" in day2["missing_inputs"]
    r = derive_crs_summary(s, opts).row(0, named=True)
    assert (r["crs_grade_astct"], r["crs_grade_astct_max"]) == (1, 5)


def test_f1_both_engines_take_the_same_values():
    for v in ("grade5", "range"):
        assert CrsOptions(unattributed_death_reading=v).resolved()["unattributed_death_reading"] == v
        assert IcansOptions(unattributed_death_reading=v).resolved()["unattributed_death_reading"] == v
    assert CrsOptions().resolved()["unattributed_death_reading"] == "grade5"
    assert IcansOptions().resolved()["unattributed_death_reading"] == "range"


# ---------------------------------------------------------------------------------------------
# F9: ICANS assessment window and assessment-ending events, as CRS


def test_f9_icans_assessment_ends_at_allo_hsct():
    """ICE 5 (grade 2) on days 4 and 12; allo-HSCT on day 10: with assessment_end_events [allo_hsct] day 12
    is not graded (the first such event ends the assessment: that day and later); with a window [0, 8]
    likewise. Default: both days graded."""
    s = study(obs=[("A", 4, "ICE", 5.0), ("A", 4, "LOC", None, "alert"), ("A", 12, "ICE", 5.0),
                   ("A", 12, "LOC", None, "alert")],
              events=[{"subject_id": "A", "day": 10.0, "event": "allo_hsct", "attribution": None}])
    assert derive_icans_daily(s).filter(pl.col("grade") >= 1)["day"].to_list() == [4, 12]
    for o in (IcansOptions(assessment_end_events=("allo_hsct",)), IcansOptions(assessment_window=(0, 8))):
        assert derive_icans_daily(s, o).filter(pl.col("grade") >= 1)["day"].to_list() == [4]


# ---------------------------------------------------------------------------------------------
# F10: --list-terms names the aliases and units; an unknown term gets a suggestion


def test_f10_listing_and_suggestion():
    from cartlab.cli.grading_io import suggest_term, term_listing

    listing = term_listing(ctcae_terms())
    neut = listing.filter(pl.col("term") == "Neutrophil count decreased").row(0, named=True)
    assert "ANC" in neut["also written as"] and "/uL" in neut["accepted units"]
    assert suggest_term("Neutropenia", ctcae_terms()).startswith("Neutrophil count decreased")
    assert suggest_term("Anemai", ctcae_terms()).startswith("Anemia")
    assert suggest_term("zzzz", ctcae_terms()) is None


def test_f10_unknown_term_message_suggests(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("term,direction,aval,unit\nNeutropenia,L,0.4,10^9/L\n")
    res = CliRunner().invoke(app, ["ctcae", str(src), "--out", str(tmp_path / "o.csv")])
    assert res.exit_code == 0 and "did you mean Neutrophil count decreased" in " ".join(res.output.split())
