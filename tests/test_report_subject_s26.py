"""Subject page and ``cartlab show`` audit (session 26): grade ranges on the page (ASTCT CRS, ICANS
episodes, ICAHT / T-ICAHT early), the ``show`` star following the row whose value is shown, the CAR
kinetics summary cells and the "synthetic" wording.

Expected values are derived by hand from the criteria texts (quoted in each test), not from cartlab.
"""

from __future__ import annotations

import html as _html
import re

import polars as pl
import pytest

from cartlab.model import Study, conform
from cartlab.report.html import _summary_block, render_subject_html
from cartlab.report.timeline import _daily, subject_timeline

SYN = "synthetic"


def _o(sid, day, param, value=None, unit=None, text=None, source=SYN):
    return {"subject_id": sid, "day": float(day), "param": param, "value": value, "value_text": text,
            "unit": unit, "source": source}


def _study(obs, subjects, doses=None, study_id="s26") -> Study:
    doses = doses or [{"subject_id": s["subject_id"], "day": 0.0, "agent": "CAR-T", "dose": 1e6,
                       "unit": "cells/kg", "source": s.get("source", SYN)} for s in subjects]
    return Study(
        study_id=study_id,
        subjects=conform(pl.DataFrame(subjects), "subjects"),
        doses=conform(pl.DataFrame(doses), "doses"),
        observations=conform(pl.DataFrame(obs, infer_schema_length=None), "observations"),
    )


def _text(page: str, start: str, end: str) -> str:
    part = page[page.index(start):page.index(end)]
    return " ".join(_html.unescape(re.sub(r"<[^>]+>", " ", part)).split())


@pytest.fixture(scope="module")
def synthetic_pages():
    """Three synthetic subjects (source = synthetic only), last follow-up day 60.

    G: TEMP 37.0 on days 0-4, SBP 110 on days 0-8, no temperature on days 5-8 (ASTCT CRS range).
    H: ANC 2.0 and PLT 150 (10^9/L) daily on days 0-14, none after (ICAHT / T-ICAHT early range).
    N: LOC "awakens_to_voice" on days 3-4 with no ICE/CAPD those days, ICE 10 on the other days 0-8.
    """
    from cartlab.analyze import Analysis

    subjects = [{"subject_id": s, "sex": "F", "age_years": 40.0, "disease": "B-ALL", "target": "CD19",
                 "last_followup_day": 60.0, "source": SYN} for s in ("G", "H", "N")]
    obs = [_o("G", d, "TEMP", 37.0, "C") for d in range(5)]
    obs += [_o("G", d, "SYSBP", 110.0, "mmHg") for d in range(9)]
    obs += [_o("H", d, "NEUT", 2.0, "10^9/L") for d in range(15)]
    obs += [_o("H", d, "PLAT", 150.0, "10^9/L") for d in range(15)]
    obs += [_o("N", d, "LOC", text="awakens_to_voice") for d in (3, 4)]
    obs += [_o("N", d, "ICE", 10.0) for d in (0, 1, 2, 5, 6, 7, 8)]
    obs += [_o("N", d, "LOC", text="alert") for d in (0, 1, 2, 5, 6, 7, 8)]
    study = _study(obs, subjects)
    a = Analysis(study)
    return {s: render_subject_html(study, s, analysis=a, summary=a.subject_summary()) for s in ("G", "H", "N")}


def test_astct_crs_row_shows_its_range_with_the_missing_temperature(synthetic_pages):
    """ASTCT 2019 (Lee 2019, Table 1): grade 1 = "Fever (temperature >= 38 C)" with no hypotension or
    hypoxia. Subject G: days 0-4 37.0 C, SBP 110 -> grade 0; days 5-8 have SBP 110 but no temperature, so
    each could be grade 1 had there been a fever: worst grade 0, up to 1 -> "0–1 (range: missing
    temperature)", as the other scales' rows show theirs; up-to-1 days 5, 6, 7, 8."""
    scales = _text(synthetic_pages["G"], "CRS on every scale", "Worst CTCAE")
    row = scales[scales.index("ASTCT 2019"):scales.index("Lee 2014")]
    assert "0–1 (range: missing temperature)" in row
    assert "could be up to grade 1 on day(s) 5, 6, 7, 8" in row


def test_early_icaht_and_t_icaht_grade_0_with_a_range_are_shown(synthetic_pages):
    """EHA/EBMT 2023 ICAHT (Rejeski, Blood 2023;142:865, Table 1), early phase days 0-30: grade 4 =
    "ANC <= 100/uL for >= 14 days"; T-ICAHT grade 4 = platelets < 20 x10^9/L for >= 14 days.
    Subject H: ANC 2.0 and PLT 150 on days 0-14 (never below a level) -> grade 0; days 15-30 = 16 days
    have no count and cannot be interpolated (no later value); 16 >= 14, so had they all been below
    every level the grade would be 4: "0–4 (range: no ANC on 16 day(s))", same for platelets."""
    tox = _text(synthetic_pages["H"], 'id="toxicity"', "CRS on every scale")
    icaht = tox[tox.index("ICAHT, early (days 0-30)"):tox.index("ICAHT, late (after day 30)")]
    assert "0–4 (range: no ANC on 16 day(s))" in icaht and "Could be up to grade 4" in icaht
    t_icaht = tox[tox.index("T-ICAHT, early (days 0-30)"):tox.index("T-ICAHT, late")]
    assert "0–4 (range: no platelet count on 16 day(s))" in t_icaht


def test_icans_episode_shows_its_range(synthetic_pages):
    """ASTCT ICANS (Lee 2019, Table 4): "awakens to voice" = grade 2; ICE 0-2 = grade 3 (grade 4 needs
    an unarousable patient or ICE 0 with it). Subject N, days 3-4: LOC awakens to voice and no ICE/CAPD
    score -> grade 2, up to 3 (ICE unknown, patient arousable): the episode row shows grade 2 and the
    range "2–3 (range: missing ICE score)"; the worst-grade row the same."""
    tox = _text(synthetic_pages["N"], 'id="toxicity"', "CRS on every scale")
    assert "Range" in tox
    ep = tox[tox.index("Immune effector cell-associated neurotoxicity syndrome"):]
    assert ep.split()[5] == "2" and "2–3 (range: missing ICE score)" in ep  # s39: the adult's score named
    worst = tox[tox.index("ICANS (ASTCT 2019)"):]
    assert worst.startswith("ICANS (ASTCT 2019) 2–3 (range: missing ICE score)")


def test_a_synthetic_subject_is_called_synthetic_not_reconstructed(synthetic_pages):
    """Every row of G is source = synthetic (study-format: synthetic = generated, from no patient):
    the toxicity note names synthetic rows, not reconstructed ones."""
    page = synthetic_pages["G"]
    note = _text(page, 'id="toxicity"', "Episodes (ADAE-like)")
    assert "A grade derived from synthetic rows is itself synthetic." in note
    assert "reconstructed rows" not in note and "reconstruction" not in note


def test_reconstructed_subject_keeps_the_reconstruction_note():
    from cartlab.analyze import Analysis

    subjects = [{"subject_id": "R", "disease": "AML", "last_followup_day": 30.0, "source": "paper"}]
    obs = [_o("R", 1, "TEMP", 39.0, "C", source="paper"), _o("R", 2, "TEMP", 37.0, "C", source="reconstructed")]
    study = _study(obs, subjects)
    note = _text(render_subject_html(study, "R", analysis=Analysis(study)), 'id="toxicity"', "Episodes (ADAE-like)")
    assert "A grade derived from reconstructed rows is itself a reconstruction." in note


def test_kinetics_summary_cells_formatted_alike_with_units():
    """Seed case CD7-AML-001: Cmax 183945.0 copies/ug gDNA; AUC0-28 1646461.507 (copies/ug gDNA x day).
    Both as whole numbers with thousands separators: 183,945 and 1,646,462 (1646461.507 rounds up) —
    never 1.64646e+06 — each header with its unit."""
    summary = pl.DataFrame({"subject_id": ["X"], "car_cmax": [183945.0], "car_tmax": [14.0],
                            "car_auc_0_28": [1646461.507], "crs_grade_astct": [3]})
    items = dict(_summary_block(summary, "X", car_unit="copies/ug gDNA")["items"])
    assert items["CAR Cmax (copies/ug gDNA), car_cmax"] == "183,945"
    assert items["CAR AUC0–28 (copies/ug gDNA × day), car_auc_0_28"] == "1,646,462"
    assert items["CAR Tmax (day), car_tmax"] == "14"
    assert items["crs_grade_astct"] == "3"


# ------------------------------------------------------------------ cartlab show: the star


def _temp_rows(rows):
    return conform(pl.DataFrame([_o("S", d, "TEMP", v, "C", source=src) for d, v, src in rows],
                                infer_schema_length=None), "observations")


def test_show_star_follows_the_row_whose_value_is_shown():
    """Audit star_case ST-1: day 5 TEMP 39.0 (paper) and 37.0 (reconstructed); day 6 37.2
    (reconstructed) and 38.6 (paper). The day's Tmax is the maximum: day 5 -> 39.0, a paper value, day
    6 -> 38.6, a paper value: neither is starred. Day 7: 39.5 reconstructed beside 37.5 paper -> 39.5,
    not measured: starred. Day 8: 38.0 paper and 38.0 reconstructed (a tie) -> not starred (not every
    row with the value is not measured); day 9: 38.2 reconstructed twice -> starred."""
    obs = _temp_rows([(5, 39.0, "paper"), (5.5, 37.0, "reconstructed"), (6, 37.2, "reconstructed"),
                      (6.5, 38.6, "paper"), (7, 39.5, "reconstructed"), (7.5, 37.5, "paper"),
                      (8, 38.0, "paper"), (8.5, 38.0, "reconstructed"), (9, 38.2, "reconstructed"),
                      (9.5, 38.2, "synthetic")])
    d = {r["d"]: (r["v"], r["syn"]) for r in _daily(obs, "TEMP", "max").iter_rows(named=True)}
    assert d == {5.0: (39.0, False), 6.0: (38.6, False), 7.0: (39.5, True), 8.0: (38.0, False),
                 9.0: (38.2, True)}
    # a minimum (SBP): the lowest row's source decides -> day 1 min 85 reconstructed (starred)
    sbp = conform(pl.DataFrame([_o("S", 1, "SYSBP", 120.0, "mmHg", source="paper"),
                                _o("S", 1.5, "SYSBP", 85.0, "mmHg", source="reconstructed")],
                               infer_schema_length=None), "observations")
    assert [(r["v"], r["syn"]) for r in _daily(sbp, "SYSBP", "min").iter_rows(named=True)] == [(85.0, True)]


def test_show_table_has_no_star_on_paper_maxima():
    obs = [_o("ST-1", 5, "TEMP", 39.0, "C", source="paper"), _o("ST-1", 5.5, "TEMP", 37.0, "C", source="reconstructed"),
           _o("ST-1", 6, "TEMP", 37.2, "C", source="reconstructed"), _o("ST-1", 6.5, "TEMP", 38.6, "C", source="paper")]
    study = _study(obs, [{"subject_id": "ST-1", "sex": "F", "age_years": 40.0, "disease": "AML",
                          "target": "CD7", "last_followup_day": 30.0}])
    _header, table, flagged = subject_timeline(study, "ST-1")
    tmax = list(table.columns[2].cells)
    assert tmax == ["", "39.0", "38.6"] and flagged is False
