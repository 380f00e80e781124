"""Session 39, the lead's own fixes (not from a review).

Expected outputs are what the messages must (not) say, read from the study folder built in each test.
"""

from __future__ import annotations

from typer.testing import CliRunner

from cartlab.cli import app

runner = CliRunner()


def _study(tmp_path, obs_rows):
    d = tmp_path / "st"
    d.mkdir()
    (d / "subjects.csv").write_text("subject_id\nA\n")
    (d / "observations.csv").write_text("subject_id,day,param,value,unit\n" + "".join(r + "\n" for r in obs_rows))
    return d


def test_rows_in_error_are_not_also_reported_as_duplicates_dropped(tmp_path):
    """Rows 2 and 3 have no day (an error): the read fails, so no "dropped, every engine sees it once"."""
    d = _study(tmp_path, ["A,0,NEUT,1.0,10^9/L", "A,,NEUT,1.0,10^9/L", "A,,NEUT,1.0,10^9/L"])
    r = runner.invoke(app, ["validate", str(d)])
    out = " ".join(r.output.split())
    assert r.exit_code != 0
    assert "neither 'day' nor 'datetime' is given" in out
    assert "duplicate" not in out


def test_a_duplicate_of_a_valid_row_is_still_dropped_with_a_warning(tmp_path):
    d = _study(tmp_path, ["A,0,NEUT,1.0,10^9/L", "A,0,NEUT,1.0,10^9/L"])
    r = runner.invoke(app, ["validate", str(d)])
    out = " ".join(r.output.split())
    assert r.exit_code == 0, out
    assert "1 exact duplicate row(s) dropped" in out and "row 2 repeats row 1" in out


def test_report_course_figures_are_svg_and_png_only_with_the_flag(tmp_path):
    """Issue 17: a subject's course figure is written as SVG (the page shows it); --png adds the PNG."""
    from cartlab.datasets import seed_case_path

    for extra, out in (([], "a"), (["--png"], "b")):
        r = runner.invoke(app, ["report", str(seed_case_path()), "--out", str(tmp_path / out), "--no-pdf", *extra])
        assert r.exit_code == 0, r.output
        figs = tmp_path / out / "figures"
        assert list(figs.glob("course_*.svg")), list(figs.iterdir())
        assert bool(list(figs.glob("course_*.png"))) == (extra == ["--png"])
        page = next((tmp_path / out).glob("subject_*.html")).read_text(encoding="utf-8")
        assert 'src="figures/course_' in page and '.svg"' in page
