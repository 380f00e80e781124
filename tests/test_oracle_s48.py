"""Session 48, review 48's independent oracle of the study-format contract (/work/notes/review48_oracle):
subject_summary.csv follows the spec's derivation conventions. Expected values by hand from
/work/shared/spec/study-format.md, quoted in the comments."""

from __future__ import annotations

from pathlib import Path

from cartlab.analyze import Analysis
from cartlab.io import read_study


def _study(tmp_path: Path, obs: list[str], disease: str = "AML") -> Path:
    d = tmp_path / "s"
    d.mkdir()
    (d / "subjects.csv").write_text(f"subject_id,disease,last_followup_day\nP1,{disease},60\n")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nP1,0,CAR-T,1000000,cells/kg\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\n" + "".join(r + "\n" for r in obs))
    (d / "events.csv").write_text("subject_id,day,event\n")  # none happened (an absent file is unknown)
    return d


def _summary(folder: Path) -> dict:
    return Analysis(read_study(folder)).subject_summary().row(0, named=True)


def test_late_icaht_with_one_measurement_in_the_window_is_empty(tmp_path):
    # spec, ICAHT: "Late (day 31 to the earliest of day 100, relapse, new therapy, HSCT or last follow-up):
    # the worst level reached by at least two measurements ...; empty when fewer than two measurements fall
    # in the window". ANC 0.3 daily on days 0-30, one late ANC 0.3 on day 45: one measurement -> empty
    # (sessions 34-47 graded 3 by a nontransient run reaching back into the early window).
    obs = [f"P1,{d},NEUT,0.3,10^9/L" for d in range(31)] + ["P1,45,NEUT,0.3,10^9/L"]
    s = _summary(_study(tmp_path, obs))
    assert s["icaht_late_grade"] is None
    assert s["icaht_early_grade"] == 4  # <= 0.5 on every day 0-30: never above 0.5 (spec grade 4)


def test_late_icaht_two_measurements_graded(tmp_path):
    # the same with a second late ANC 0.8 on day 50: worst level reached by two measurements: <= 1.0 -> 2
    obs = [f"P1,{d},NEUT,0.3,10^9/L" for d in range(31)] + ["P1,45,NEUT,0.3,10^9/L", "P1,50,NEUT,0.8,10^9/L"]
    assert _summary(_study(tmp_path, obs))["icaht_late_grade"] == 2


def test_best_response_day_is_a_calendar_day(tmp_path):
    # spec, derivation conventions: "Days are calendar days relative to day 0"; a marrow at day 28.6 (a
    # time of day 14:24) is on calendar day 28. AML CR: marrow blasts 2% (< 5%), no peripheral blasts,
    # ANC 1.5 (>= 1.0), PLT 150 (>= 100); pre-treatment marrow 40% on day -10.
    obs = ["P1,-10,BMBLAST,40,%", "P1,28.6,BMBLAST,2,%", "P1,28,PBBLAST,0,%", "P1,28,NEUT,1.5,10^9/L",
           "P1,28,PLAT,150,10^9/L"]
    folder = _study(tmp_path, obs)
    s = _summary(folder)
    assert (s["best_response"], s["best_response_day"]) == ("CR", 28.0)
    # best_response.csv keeps the assessment's own time
    best = Analysis(read_study(folder)).table("best_response").row(0, named=True)
    assert best["best_response_day"] == 28.6


def test_late_icaht_without_events_file_is_graded_over_the_window(tmp_path):
    # spec: "Only subjects.csv is required"; late window "to the earliest of day 100, relapse, new therapy,
    # HSCT or last follow-up". No events.csv, follow-up 60: ANC 2.0 on days 0-30, 0.3 on day 40, 0.05 on day
    # 50: two measurements <= 0.5, one <= 0.1 -> worst level reached by two measurements: <= 0.5 -> grade 3
    # (sessions 40-47: empty, the grade of the shortest window; now option icaht.absent_events=shortest_window)
    obs = [f"P1,{d},NEUT,2.0,10^9/L" for d in range(31)] + ["P1,40,NEUT,0.3,10^9/L", "P1,50,NEUT,0.05,10^9/L"]
    folder = _study(tmp_path, obs)
    (folder / "events.csv").unlink()
    s = _summary(folder)
    assert s["icaht_late_grade"] == 3
