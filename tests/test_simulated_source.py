"""Values from the digital twin (``source = simulated``) are never shown as measured (issue 16)."""
import re

import polars as pl

from cartlab.datasets import seed_case
from cartlab.explain import explain
from cartlab.model import Study


def test_simulated_rows_are_marked_not_measured_in_explain():
    s = seed_case()
    # relabel the seed's reconstructed CAR-T samples as simulated: they must still be marked
    obs = s.observations.with_columns(
        pl.when(pl.col("source") == "reconstructed").then(pl.lit("simulated")).otherwise(pl.col("source"))
        .alias("source"))
    sim = Study(**{**{k: getattr(s, k) for k in s.__dataclass_fields__}, "observations": obs})
    e = explain(sim, "kinetics")
    rows = e.days.filter(~pl.col("rule").eq("kinetics.imputed_zero"))
    marked = rows.filter(pl.col("reason").str.contains("not measured"))
    # by hand: 12 CARCOPY samples after day 0 in the seed, 2 stated by the paper -> 10 simulated
    assert marked.height == 10
    assert set(marked["source"]) == {"simulated"}


def test_report_banner_counts_simulated_rows_as_not_measured(tmp_path):
    from cartlab.report.html import provenance_counts, write_subject_report

    s = seed_case()
    obs = s.observations.with_columns(
        pl.when(pl.col("source") == "reconstructed").then(pl.lit("simulated")).otherwise(pl.col("source"))
        .alias("source"))
    sim = Study(**{**{k: getattr(s, k) for k in s.__dataclass_fields__}, "observations": obs})
    before, after = provenance_counts(s), provenance_counts(sim)
    moved = s.observations.filter(pl.col("source") == "reconstructed").height
    assert after["simulated"] == moved and after["observed"] == before["observed"]
    assert after["not_measured"] == before["not_measured"]
    html = write_subject_report(sim, sim.subject_ids[0], tmp_path).read_text()
    assert f"simulated by the digital twin (<code>source = simulated</code>): {moved:,} rows" in html  # thousands separated


def test_report_extra_figure_section_is_rendered_with_its_table(tmp_path):
    import base64

    from cartlab.report.html import ReportFigure
    from cartlab.report.study import write_study_report

    s = seed_case()
    sid = s.subject_ids[0]
    png = b"\x89PNG\r\n\x1a\nnot-really-a-png"
    table = pl.DataFrame({"anchor": ["CAR peak"], "paper": ["183,945"], "twin": ["150,000"]})
    fig = ReportFigure(title="Digital twin", png=png, caption="Simulated course (source = simulated)",
                       anchor="twin", nav="Twin", table=table)
    index = write_study_report(s, tmp_path, figures={sid: [fig]})
    page = (tmp_path / next(p.name for p in tmp_path.glob("subject_*.html"))).read_text()
    assert '<h2 id="twin">Digital twin</h2>' in page and '<a href="#twin">Twin</a>' in page
    # the figure is a file of the report folder, linked from the page (PNG; no SVG was given)
    src = re.search(r'<img alt="[^"]*" src="(figures/twin_[^"]+\.png)"', page).group(1)
    assert (tmp_path / src).read_bytes() == png and "SVG</a>" not in page.split('id="twin"')[1]
    # rendered alone (no folder), the page embeds it
    from cartlab.report.html import render_subject_html
    alone = render_subject_html(s, sid, figures=[fig])
    assert base64.b64encode(png).decode("ascii") in alone
    assert "Simulated course (source = simulated)" in page and "CAR peak" in page and "150,000" in page
    assert index.exists()
