"""Session 30 twin audit (/work/notes/audit_twinconsist, findings 1, 2, 11): a simulated value is
never called "measured" — in the daily count tables, the report's "Observations available" table and
the course figure's legend."""

from __future__ import annotations

import polars as pl

from cartlab.grading.hemato_common import daily_series, recorded_day
from grading_helpers import study


def _with_source(s, sources):
    from dataclasses import replace

    return replace(s, observations=s.observations.with_columns(pl.Series("source", sources)))


def test_a_simulated_day_says_simulated_and_still_counts_as_recorded():
    # ANC on day 1 simulated, day 3 measured (source empty), day 2 interpolated between them
    s = study(obs=[("A", 1.2, "NEUT", 0.4), ("A", 3.2, "NEUT", 0.8)])
    s = _with_source(s, ["simulated", None])
    opts = {"daily_value": "min", "interpolate": True, "max_interpolation_gap_days": None}
    d = daily_series(s, "NEUT", opts, "ANC")
    rows = {r["day"]: r for r in d.iter_rows(named=True)}
    assert [rows[k]["source"] for k in (1, 2, 3)] == ["simulated", "interpolated", "measured"]
    assert rows[1]["reason"] == "simulated ANC 0.4" and rows[3]["reason"] == "measured ANC 0.8"
    assert d.filter(recorded_day())["day"].to_list() == [1, 3]
    # a day with a measured and a simulated value is measured (one measured value is enough)
    s2 = _with_source(study(obs=[("A", 1.2, "NEUT", 0.4), ("A", 1.5, "NEUT", 0.6)]), ["simulated", "measured"])
    assert daily_series(s2, "NEUT", opts, "ANC")["source"].to_list() == ["measured"]


def test_the_report_counts_simulated_rows_as_not_measured():
    from cartlab.report.html import _observation_overview

    obs = pl.DataFrame({"param": ["CARCOPY"] * 3, "day": [1.0, 7.0, 14.0], "unit": ["copies/ug"] * 3,
                        "source": ["simulated", "simulated", "paper"]})
    t = _observation_overview(obs)
    (row,) = t["rows"]
    # Rows, first, last, stated in paper, not measured, measured: 3 rows, 1 paper, 2 simulated, 0 measured
    assert row["cells"][2] == "3" and row["cells"][5:] == ["1", "2", "0"]
    assert t["headers"][6] == "Not measured (reconstructed, synthetic, simulated)"


def test_the_course_legend_names_simulated_timing():
    from cartlab.report.course_parts import _Tracker
    from cartlab.report.figures import _legend_handles

    tr = _Tracker()
    tr.hatched = True
    tr.hatched_kinds.add("simulated")
    labels = [h.get_label() for h in _legend_handles(tr, grades_shown=False, has_events=False)]
    assert "hatched bar = simulated timing" in labels and not any("reconstructed timing" in x for x in labels)


def test_a_marrow_with_blasts_before_any_remission_is_not_called_a_relapse():
    """Twin audit finding 12: CD7 on 80% of blasts on day 17 with 12.6% marrow blasts and no remission
    before: ELN 2022 calls relapse only after CR/CRh/CRi, so the antigen table does not say relapse."""
    from cartlab.response.molecular import derive_antigen_loss

    s = study(obs=[("A", -7.0, "TGTBLAST", 90.0), ("A", 17.0, "TGTBLAST", 80.0), ("A", 17.0, "BMBLAST", 12.6)])
    s = _with_analyte(s)
    r = derive_antigen_loss(s).filter(pl.col("day") == 17.0).row(0, named=True)
    assert r["with_relapse_marrow"] is True and r["rule"] == "antigen.retained"
    assert "antigen-positive relapse" not in r["reason"]
    assert "marrow blasts 12.6% the same day (>= 5%): antigen-positive leukaemia in the marrow" in r["reason"]
    assert "persistent disease" in r["reason"]


def _with_analyte(s):
    from dataclasses import replace

    obs = s.observations.with_columns(
        pl.when(pl.col("param") == "TGTBLAST").then(pl.lit("CD7")).otherwise(None).alias("analyte"))
    return replace(s, observations=obs)
