"""Cohort views as data (cartlab.report.cohort_data / cohort_stats): every expected value below is
derived by hand from the small tables written here (or from an independent formula, as cited).

The hand-made tables are handed to an Analysis with ``Analysis.adopt`` (as the batched runner does),
so the views read exactly these rows; tables not given are derived from the tiny study as usual.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab.analyze import Analysis, Skipped
from cartlab.io import read_study
from cartlab.report import cohort_data as cd
from cartlab.report.cohort_base import ViewUnavailable, worst_grade_counts
from cartlab.report.cohort_stats import at_risk_table

EV = pl.List(pl.String)


def _study(tmp_path: Path, rows: list[tuple], events: str = "", obs: str = ""):
    """subjects (id, disease, last_followup_day, source) and optional events / observations CSV text."""
    f = tmp_path / "study"
    f.mkdir(exist_ok=True)
    lines = ["subject_id,disease,target,last_followup_day,source"]
    lines += [f"{sid},{dis},CD7,{fu},{src}" for sid, dis, fu, src in rows]
    (f / "subjects.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if events:
        (f / "events.csv").write_text("subject_id,day,event,detail,source\n" + events.strip() + "\n", encoding="utf-8")
    if obs:
        (f / "observations.csv").write_text("subject_id,day,param,value,value_text,unit,lloq,specimen,source\n"
                                            + obs.strip() + "\n", encoding="utf-8")
    return read_study(f)


def _adopt(study, protocol=None, options=None, **tables: pl.DataFrame) -> Analysis:
    """An Analysis (with ``options``) whose ``tables`` are the given frames (their steps are not run)."""
    a = Analysis(study, options=options, protocol=protocol)
    steps = [s for s in a.steps if set(s.outputs) & set(tables)]
    a.adopt(steps, dict(tables), {n: set() for n in tables}, [], [], {}, {})
    return a


# ------------------------------------------------------------------------------------------------
# grade counts: missing is not grade 0


def test_worst_grade_counts_by_hand():
    long = pl.DataFrame({"subject_id": ["a", "b", "c", "d", "a"], "term": ["CRS"] * 5, "scale": ["ASTCT"] * 5,
                         "grade": [0, 2, 3, None, 1]}, schema_overrides={"grade": pl.Int64})
    r = worst_grade_counts(long, 4).row(0, named=True)
    # a: worst of 0 and 1 = 1; b 2; c 3; d not evaluable
    assert (r["n_subjects"], r["n_evaluable"], r["n_not_evaluable"]) == (4, 3, 1)
    assert [r[f"grade_{g}"] for g in range(5)] == [0, 1, 1, 1, 0]
    assert (r["n_any"], r["n_ge3"]) == (3, 1)


def test_worst_grade_counts_refuses_grades_out_of_range():
    long = pl.DataFrame({"subject_id": ["a"], "term": ["x"], "scale": ["y"], "grade": [-1]})
    with pytest.raises(ValueError, match="outside"):
        worst_grade_counts(long, 5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"), st.sampled_from(["CRS", "ICANS", "ICAHT"]),
                          st.one_of(st.none(), st.integers(0, 5))), min_size=1, max_size=60))
def test_worst_grade_counts_sum_to_n_for_random_grade_tables(rows):
    long = pl.DataFrame(rows, schema={"subject_id": pl.String, "term": pl.String, "grade": pl.Int64},
                        orient="row").with_columns(pl.lit("s").alias("scale"))
    out = worst_grade_counts(long, 5)
    for r in out.iter_rows(named=True):
        # independent count: per subject the maximum non-missing grade, None when all missing
        per: dict[str, int | None] = {}
        for sid, term, g in rows:
            if term == r["term"]:
                per[sid] = g if per.get(sid) is None else (per[sid] if g is None else max(per[sid], g))
        grades = [g for g in per.values() if g is not None]
        assert r["n_subjects"] == len(per)
        assert r["n_evaluable"] == len(grades) == sum(r[f"grade_{k}"] for k in range(6))
        assert r["n_evaluable"] + r["n_not_evaluable"] == r["n_subjects"]
        assert r["n_any"] == sum(1 for g in grades if g >= 1) == sum(r[f"grade_{k}"] for k in range(1, 6))
        assert r["n_ge3"] == sum(1 for g in grades if g >= 3)


def test_grade_distribution_counts_worst_grades_and_not_evaluable_apart(tmp_path):
    study = _study(tmp_path, [(s, "AML", 30, "") for s in "ABCD"])
    crs = pl.DataFrame({"subject_id": list("ABCD"), "crs_grade_astct": [0, 2, 3, None],
                        "crs_grade_astct_max": [0, 3, 3, None]}, schema_overrides={"crs_grade_astct": pl.Int64,
                                                                                     "crs_grade_astct_max": pl.Int64})
    icans = pl.DataFrame({"subject_id": list("ABCD"), "icans_grade_astct": [None, None, None, None],
                          "icans_grade_astct_max": [None] * 4}, schema_overrides={"icans_grade_astct": pl.Int64,
                                                                                    "icans_grade_astct_max": pl.Int64})
    a = _adopt(study, crs_summary=crs, icans_summary=icans)
    c = cd.grade_distribution(a).counts
    crs_c = {r["label"]: r for r in c.filter(pl.col("term") == "CRS").iter_rows(named=True)}
    assert [crs_c[f"grade {g}"]["n"] for g in range(6)] == [1, 0, 1, 1, 0, 0]
    assert crs_c["not evaluable"]["n"] == 1  # D: no data, not grade 0
    assert crs_c["grade 2"]["pct"] == pytest.approx(100 / 3)  # of the 3 evaluable subjects
    assert crs_c["grade 2"]["n_could_be_higher"] == 1  # B: 2, could be 3
    assert crs_c["grade 3"]["n_could_be_higher"] == 0
    icans_c = c.filter(pl.col("term") == "ICANS")
    assert icans_c.filter(pl.col("grade").is_null())["n"].item() == 4
    assert icans_c.filter(pl.col("grade") == 0)["n"].item() == 0
    # a subset: only B and D
    c2 = cd.grade_distribution(a, ["B", "D"]).counts.filter(pl.col("term") == "CRS")
    assert c2.filter(pl.col("grade") == 2)["n"].item() == 1
    assert c2.filter(pl.col("grade").is_null())["n"].item() == 1
    assert c2.filter(pl.col("grade") == 0)["n"].item() == 0


def test_toxicity_summary_columns_and_percentages(tmp_path):
    study = _study(tmp_path, [(s, "AML", 30, "") for s in "ABCD"])
    crs = pl.DataFrame({"subject_id": list("ABCD"), "crs_grade_astct": [0, 2, 3, None]},
                       schema_overrides={"crs_grade_astct": pl.Int64})
    a = _adopt(study, crs_summary=crs)
    t = cd.toxicity_summary(a, include_labs=False)
    row = t.filter((pl.col("Term") == "Cytokine release syndrome") & (pl.col("Scale") == "ASTCT 2019")).row(0, named=True)
    # by hand: N = 3 evaluable (A, B, C), 1 not evaluable; any grade = B, C = 2/3; >= 3 = C = 1/3
    assert row["N evaluable"] == 3 and row["Not evaluable"] == 1
    assert row["Any grade n (%)"] == "2 (66.7%)"
    assert row["Grade >=3 n (%)"] == "1 (33.3%)"
    assert [row[f"Grade {g} n (%)"] for g in range(1, 6)] == ["0 (0.0%)", "1 (33.3%)", "1 (33.3%)", "0 (0.0%)",
                                                              "0 (0.0%)"]


def test_toxicity_takes_the_worst_adae_episode_and_labs_per_direction(tmp_path):
    study = _study(tmp_path, [(s, "AML", 30, "") for s in "AB"])
    crs = pl.DataFrame({"subject_id": ["A", "B"], "crs_grade_astct": [1, None]},
                       schema_overrides={"crs_grade_astct": pl.Int64})
    adae = pl.DataFrame({"USUBJID": ["A", "B"], "AETERM": ["Cytokine release syndrome"] * 2,
                         "ATOXGRS": ["ASTCT 2019"] * 2, "ATOXGR": [2, 3]})
    adlb = pl.DataFrame({"subject_id": ["A", "A", "B", "A"], "day": [1.0, 2.0, 3.0, -2.0],
                         "ATOXDSCL": ["Anemia", "Anemia", None, "Anemia"], "ATOXGRL": [1, 3, None, 4],
                         "ATOXDSCH": [None, None, "Hemoglobin increased", None], "ATOXGRH": [None, None, 0, None]},
                        schema_overrides={"ATOXGRL": pl.Int64, "ATOXGRH": pl.Int64})
    a = _adopt(study, crs_summary=crs, adae_toxicity=adae, adlb=adlb)
    c = cd.toxicity_counts(a)
    crs_row = c.filter((pl.col("term") == "Cytokine release syndrome") & (pl.col("scale") == "ASTCT 2019")).row(0, named=True)
    # A: summary 1, episode 2 -> 2; B: not evaluable in the summary but an episode of grade 3 -> 3
    assert (crs_row["grade_2"], crs_row["grade_3"], crs_row["n_not_evaluable"]) == (1, 1, 0)
    anemia = c.filter(pl.col("term") == "Anemia").row(0, named=True)
    # A: worst of days >= 0 = 3 (the grade 4 on day -2 is before the infusion); B: no anemia row -> not evaluable
    assert (anemia["grade_3"], anemia["grade_4"], anemia["n_evaluable"], anemia["n_not_evaluable"]) == (1, 0, 1, 1)
    hb = c.filter(pl.col("term") == "Hemoglobin increased").row(0, named=True)
    assert (hb["grade_0"], hb["n_not_evaluable"]) == (1, 1)


# ------------------------------------------------------------------------------------------------
# response rates: Clopper-Pearson


def _best(ids, criteria, cats):
    return pl.DataFrame({"subject_id": ids, "criteria": criteria, "best_response": cats,
                         "best_response_day": [28.0 if c else None for c in cats], "responder": [None] * len(ids),
                         "relapse_day": [None] * len(ids), "evidence": [[] for _ in ids]},
                        schema_overrides={"relapse_day": pl.Float64, "responder": pl.Boolean, "evidence": EV})


def test_response_rates_exact_ci_by_hand(tmp_path):
    ids = [f"S{i}" for i in range(12)]
    study = _study(tmp_path, [(s, "AML" if i < 10 else "LBCL", 30, "") for i, s in enumerate(ids)])
    cats = ["CR"] * 5 + ["CRi"] * 2 + ["NR"] * 2 + ["NE"] + [None, None]
    crit = ["ELN 2022 AML"] * 10 + [None, None]
    a = _adopt(study, best_response=_best(ids, crit, cats))
    # the subset path (every subject named): recomputed with orr
    r = cd.response_rate_table(a, ids)
    cr = r.table.filter((pl.col("endpoint") == "CR/CRh/CRi") & (pl.col("criteria") == "all")).row(0, named=True)
    # 7 of the 10 subjects with criteria (NE counts as non-response; the 2 lymphoma subjects are in no denominator).
    # Exact 95% CI for 7/10 (Clopper & Pearson, Biometrika 1934;26:404): beta quantiles
    # Beta^-1(0.025; 7, 4) = 0.3475 and Beta^-1(0.975; 8, 3) = 0.9333 (R binom.test(7, 10): 0.3475471 0.9332605)
    assert (cr["n"], cr["n_responders"]) == (10, 7)
    assert cr["ci_low"] == pytest.approx(0.3475471, abs=1e-6)
    assert cr["ci_high"] == pytest.approx(0.9332605, abs=1e-6)
    assert r.n_no_criteria == 2 and "no denominator" in r.notes[0]
    one = cd.response_rate_table(a, ["S0"]).table.filter(pl.col("criteria") == "all").row(0, named=True)
    # x = 1, n = 1: lower = Beta^-1(0.025; 1, 1) = 0.025, upper = 1 (k = n)
    assert one["ci_low"] == pytest.approx(0.025, abs=1e-9) and one["ci_high"] == 1.0


def test_response_rates_table_without_exact_ci_gets_them(tmp_path):
    ids = [f"S{i}" for i in range(10)]
    study = _study(tmp_path, [(s, "AML", 30, "") for s in ids])
    rates = pl.DataFrame({"endpoint": ["ORR"], "criteria": [None], "n": [10], "n_responders": [7], "rate": [0.7],
                          "ci_low": [0.4], "ci_high": [0.9], "level": [0.95], "method": ["Wald"],
                          "category_counts": ["CR=7, NR=3"]}, schema_overrides={"criteria": pl.String})
    a = _adopt(study, best_response=_best(ids, ["ELN 2022 AML"] * 10, ["CR"] * 7 + ["NR"] * 3), response_rates=rates)
    row = cd.response_rate_table(a).table.row(0, named=True)
    assert row["method"] == "Clopper-Pearson exact"
    assert (round(row["ci_low"], 4), round(row["ci_high"], 4)) == (0.3475, 0.9333)


# ------------------------------------------------------------------------------------------------
# survival: numbers at risk


def _adtte(rows):
    """rows: (subject, PARAMCD, AVAL, EVENT)."""
    return pl.DataFrame([{"STUDYID": "t", "subject_id": s, "PARAMCD": p, "ANLFL": "Y", "STARTDY": 0.0, "ADY": v,
                          "AVAL": v, "CNSR": 1 - e, "EVENT": e, "evidence": []} for s, p, v, e in rows],
                        schema_overrides={"evidence": EV})


def test_numbers_at_risk_are_subjects_with_time_at_or_after_the_day(tmp_path):
    ids = list("ABCDE")
    study = _study(tmp_path, [(s, "AML", 30, "") for s in ids])
    aval = {"A": 5.0, "B": 10.0, "C": 10.0, "D": 20.0, "E": 30.0}
    event = {"A": 1, "B": 0, "C": 1, "D": 0, "E": 0}
    a = _adopt(study, adtte=_adtte([(s, "OS", aval[s], event[s]) for s in ids]))
    d = cd.survival_data(a, endpoints=("OS",), at=[0, 10, 15, 20, 25, 30, 35])
    assert d.source == {"OS": "km table"}
    got = dict(zip(d.at_risk["time"].to_list(), d.at_risk["n_at_risk"].to_list()))
    # by hand: AVAL >= d among 5, 10, 10, 20, 30
    assert got == {0.0: 5, 10.0: 4, 15.0: 2, 20.0: 2, 25.0: 1, 30.0: 1, 35.0: 0}
    # KM by hand: S(5) = 4/5; S(10) = 4/5 * (1 - 1/4) = 0.6
    s = dict(zip(d.steps["time"].to_list(), d.steps["survival"].to_list()))
    assert s[5.0] == pytest.approx(0.8) and s[10.0] == pytest.approx(0.6)
    # a subset is estimated again from its own rows: B, D, E -> no event, S = 1, at risk at 15 = 2
    sub = cd.survival_data(a, ["B", "D", "E"], endpoints=("OS",), at=[0, 15])
    assert sub.source == {"OS": "estimated here from adtte"}
    assert sub.at_risk["n_at_risk"].to_list() == [3, 2]
    assert sub.steps["survival"].max() == 1.0 == sub.steps["survival"].min()


def test_at_risk_table_zero_after_the_last_time():
    steps = pl.DataFrame({"PARAMCD": ["OS"] * 3, "time": [0.0, 4.0, 9.0], "n_at_risk": [3, 3, 1]})
    assert at_risk_table(steps, [0, 2, 4, 5, 9, 10])["n_at_risk"].to_list() == [3, 3, 3, 1, 1, 0]


def test_rfs_from_the_km_table_and_estimated_for_a_subset(tmp_path):
    ids = list("ABC")
    study = _study(tmp_path, [(s, "AML", 30, "") for s in ids])
    rows = [(s, "OS", 30.0, 0) for s in ids] + [("A", "RFS", 12.0, 1), ("B", "RFS", 20.0, 0)]
    a = _adopt(study, adtte=_adtte(rows))
    d = cd.survival_data(a, endpoints=("OS", "RFS"), at=[0, 12, 13])
    assert d.source["RFS"] == "km table"  # km.csv holds RFS since 0.4
    rfs = d.at_risk.filter(pl.col("PARAMCD") == "RFS")["n_at_risk"].to_list()
    assert rfs == [2, 2, 1]
    sub = cd.survival_data(a, ["A", "B"], endpoints=("OS", "RFS"), at=[0, 12, 13])
    assert sub.source["RFS"] == "estimated here from adtte"
    assert any("RFS" in n and "for the selected subjects" in n for n in sub.notes)
    assert sub.at_risk.filter(pl.col("PARAMCD") == "RFS")["n_at_risk"].to_list() == [2, 2, 1]


# ------------------------------------------------------------------------------------------------
# swimmer


def test_swimmer_bars_markers_antigen_flags_and_provenance(tmp_path):
    ids = ["P1", "P2", "P3"]
    study = _study(tmp_path, [("P1", "AML", 60, "paper"), ("P2", "T-ALL", 40, "synthetic"), ("P3", "AML", 90, "")],
                   events="P1,60,allo_hsct,HSCT,paper\nP3,45,allo_hsct,HSCT,synthetic\nP2,35,death,,synthetic")
    adtte = _adtte([("P1", "OS", 60.0, 0), ("P2", "OS", 35.0, 1), ("P3", "OS", 90.0, 0),
                    ("P2", "CIR", 10.0, 1), ("P3", "CIR", 50.0, 1)])
    best = _best(ids, ["ELN 2022 AML", "ALL CAR-T response", "ELN 2022 AML"], ["CR", "CRi", "CR"]).with_columns(
        pl.Series("relapse_day", [None, 30.0, None], pl.Float64))
    # one assessment per relapse (days 10 and 30): a relapse's flag comes from its own episode (review 36 B1)
    loss = pl.DataFrame({"subject_id": ["P2", "P2"], "antigen": ["CD7", "CD7"], "day": [10.0, 30.0],
                         "antigen_loss": [True, True]})
    relapse = pl.DataFrame({"subject_id": ["P2"], "relapse_day": [30.0], "evidence": [[]]},
                           schema_overrides={"evidence": EV})
    a = _adopt(study, adtte=adtte, best_response=best, antigen_loss=loss, relapse=relapse)
    d = cd.swimmer_data(a)
    # sorted by follow-up, longest first: P3 (90), P1 (60), P2 (35)
    assert d.bars["subject_id"].to_list() == ["P3", "P1", "P2"]
    assert d.bars["order"].to_list() == [0, 1, 2]
    assert d.bars["ongoing"].to_list() == [True, True, False]
    # P2: the CIR relapse event (day 10) and the marrow relapse day 30 (best_response / relapse table):
    # every relapse is marked (s28 report audit: not only the first), both CD7-negative
    rel2 = d.markers.filter((pl.col("subject_id") == "P2") & (pl.col("marker") == "relapse")).sort("day")
    assert rel2["day"].to_list() == [10.0, 30.0] and set(rel2["antigen"]) == {"negative"}
    # review 41 F1/F14: each relapse's own-day result, named with its day; <= 30% is "low/negative"
    assert set(rel2["label"]) == {"CD7-low/negative relapse (≤30%; CD7 on day 10)",
                                  "CD7-low/negative relapse (≤30%; CD7 on day 30)"}
    m = {(r["subject_id"], r["marker"]): r for r in d.markers.iter_rows(named=True)}
    # P3 relapsed without an antigen assessment: not assessed, never "retained"
    assert m[("P3", "relapse")]["antigen"] == "not assessed"
    assert m[("P2", "death")]["day"] == 35.0
    assert ("P1", "death") not in m
    # HSCT markers take the provenance of their event row: its own source kind (review 41 F2: a synthetic
    # row is "synthetic", never "reconstructed", as cohort_swimmer_bars.csv end_kind since review 39 C2)
    assert m[("P1", "allo-HSCT")]["kind"] == "paper"
    assert m[("P3", "allo-HSCT")]["kind"] == "synthetic"
    # a subset filters bars and markers
    d2 = cd.swimmer_data(a, ["P2"])
    assert d2.bars["subject_id"].to_list() == ["P2"] and set(d2.markers["subject_id"]) == {"P2"}


def test_swimmer_names_the_missing_table(tmp_path):
    study = _study(tmp_path, [("A", "AML", 30, "")])
    a = Analysis(study)
    step = next(s for s in a.steps if s.outputs == ("adtte",))
    a.adopt([step], {}, {"adtte": None}, [Skipped(step.engine, ["adtte"], None, "ValueError: boom", step.fix)],
            [], {}, {})
    with pytest.raises(ViewUnavailable) as exc:
        cd.swimmer_data(a)
    assert "adtte" in exc.value.reason and "boom" in exc.value.reason


def test_empty_selection_and_no_protocol_say_why(tmp_path):
    study = _study(tmp_path, [("A", "AML", 30, "")])
    a = Analysis(study)
    with pytest.raises(ViewUnavailable, match="no subjects in the selection"):
        cd.grade_distribution(a, [])
    with pytest.raises(ViewUnavailable, match="no protocol"):
        cd.deviation_summary(a)


# ------------------------------------------------------------------------------------------------
# kinetics, cytokines, count recovery


def test_expansion_and_exposure_cope_with_subjects_without_kinetics(tmp_path):
    study = _study(tmp_path, [("A", "AML", 30, ""), ("B", "AML", 30, "")],
                   obs="A,7,CARCOPY,1000,,copies/ug gDNA,50,PB,\nA,14,CARCOPY,,<50,copies/ug gDNA,50,PB,synthetic\n"
                       "A,10,CARCOPY,99,,copies/ug gDNA,50,BM,")
    a = Analysis(study)
    e = cd.expansion_data(a)
    # the marrow sample is not peripheral blood; "<50" is drawn at its limit and flagged; its row is
    # synthetic: kind "synthetic" (the rows' own source, review 41 F2)
    assert e.points.select("day", "value", "blq", "kind").rows() == [(7.0, 1000.0, False, "observed"),
                                                                      (14.0, 50.0, True, "synthetic")]
    assert (e.n_subjects, e.n_without) == (2, 1)
    with pytest.raises(ViewUnavailable, match="CARCOPY"):
        cd.expansion_data(a, ["B"])
    kin = pl.DataFrame({"subject_id": ["A", "B"], "car_cmax": [None, None], "car_auc_0_28": [None, None]},
                       schema_overrides={"car_cmax": pl.Float64, "car_auc_0_28": pl.Float64})
    with pytest.raises(ViewUnavailable, match="kinetics"):
        cd.exposure_outcome_data(_adopt(study, kinetics_summary=kin))


def test_cytokine_matrix_daily_max_with_censored_results(tmp_path):
    study = _study(tmp_path, [("A", "AML", 30, ""), ("B", "AML", 30, "")],
                   obs="A,1.2,IL6,10,,pg/mL,,,\nA,1.7,IL6,30,,pg/mL,,,synthetic\nA,2,IL6,,<5,pg/mL,,,\n"
                       "B,1,IL6,300,,pg/mL,,,\nB,1,IL10,7,,pg/mL,,,")
    m = cd.cytokine_matrix(Analysis(study))
    # day 1 of A: max(10, 30) = 30 (its row is synthetic); "<5" counts at 5; B peaks higher, so first
    assert m.subjects == ("B", "A")
    assert m.cells.filter(pl.col("subject_id") == "A").select("day", "value", "kind").rows() == [
        (1, 30.0, "synthetic"), (2, 5.0, "observed")]  # the row's own source (review 41 F2)
    assert m.days == (1, 2) and m.unit == "pg/mL"
    assert cd.cytokine_matrix(Analysis(study), param="IL10").cells.height == 1


def test_count_recovery_statuses_and_curve(tmp_path):
    study = _study(tmp_path, [(s, "AML", 30, "") for s in "ABCD"])
    rec = pl.DataFrame({
        "subject_id": list("ABCD"), "neutrophil_recovery_day": [10.0, 20.0, None, None],
        "neutrophil_recovery_reason": ["ANC >= 0.5 on days 10, 11, 12", "ANC >= 0.5 on days 20, 21, 22",
                                       "not reached: no 3 consecutive days", "no ANC from day 0 on."],
        "platelet_recovery_day": [None, None, None, None],
        "platelet_recovery_reason": ["not applicable: platelets never below 20", None, None, None]},
        schema_overrides={"platelet_recovery_day": pl.Float64})
    d = cd.count_recovery_data(_adopt(study, count_recovery=rec))
    neut = d.subjects.filter(pl.col("lineage") == "neutrophil")["status"].to_list()
    assert neut == ["recovered", "recovered", "not reached", "no data"]
    # of the 3 that needed to recover (A, B, C): 1/3 by day 10, 2/3 by day 20
    c = d.curve.filter(pl.col("lineage") == "neutrophil")
    assert c["proportion"].to_list() == pytest.approx([1 / 3, 2 / 3])
    assert d.subjects.filter(pl.col("lineage") == "platelet")["status"].to_list() == [
        "not applicable", "no data", "no data", "no data"]


def test_recovery_legend_states_the_criteria_tables_thresholds():
    """The count-recovery view names the thresholds of count_recovery.yaml (read here with plain YAML),
    not numbers written in the renderer."""
    from importlib import resources

    import yaml

    from cartlab.report.cohort_data import recovery_definition

    raw = yaml.safe_load(resources.files("cartlab.grading").joinpath("criteria/count_recovery.yaml").read_text())
    labels, consecutive = recovery_definition()
    assert consecutive == raw["defaults"]["consecutive"]
    for lin in ("neutrophil", "platelet"):
        row = raw[lin]
        assert f"{row['value']:,} {row['unit']}" in labels[lin] and row["op"] in labels[lin]
