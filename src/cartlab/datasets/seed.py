"""The built-in seed case: the CD7 CAR-T patient with relapsed AML of Cao et al. 2022.

Source: Cao X, Dai H, Cui Q, et al. "CD7-directed CAR T-cell therapy: a potential immunotherapy
strategy for relapsed/refractory acute myeloid leukemia." Exp Hematol Oncol 2022;11:67,
doi:10.1186/s40164-022-00318-6 (trial NCT04762485).

The paper states a handful of values (see ``PAPER_FACTS``); they are kept exactly and carry
``source=paper``. Everything else (the daily course from day -7 to day 60) is a *reconstruction*
consistent with those facts and carries ``source=reconstructed``; ``source_note`` says what was
reconstructed. The shipped folder ``seed_case/`` is produced by :func:`build_seed_case` (a test
checks that they agree) so the reconstruction is reproducible and reviewable.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

SUBJECT = "CD7-AML-001"
PAPER = "paper"
RECON = "reconstructed"
CITATION = "Cao et al., Exp Hematol Oncol 2022;11:67 (NCT04762485)"

#: The values the paper states, as (param, analyte, day, value, unit). Tests check them exactly.
PAPER_FACTS = (
    ("CARCOPY", None, 14, 183945.0, "copies/ug gDNA"),
    ("CARCOPY", None, 28, 5084.0, "copies/ug gDNA"),
    ("BMBLAST", None, -7, 20.0, "%"),
    ("BMBLAST", None, 17, 0.0, "%"),
    ("MRDFCM", None, -7, 12.9, "%"),
    ("MRDFCM", None, 17, 2.5e-4, "fraction"),
    ("TGTBLAST", "CD7", -7, 95.6, "%"),
    ("MOLVAF", "ASXL1", -7, 6.0, "%"),
    ("MOLAR", "FLT3-ITD", -7, 59.4, "%"),
    ("MOLAR", "FLT3-ITD", 17, 5.9, "%"),
    ("FISHPCT", "TP53del", -7, 72.0, "%"),
    ("FISHPCT", "TP53del", 17, 9.0, "%"),
    ("FUSION", "SKAP2::RUNX1", 17, 3.0, "%"),
    ("TEMP", None, 9, 39.4, "C"),
)

DAYS = np.arange(-7, 61)
FEVER_DAYS = range(3, 15)  # 12 days of fever (paper: "lasting for 12 days"); placement reconstructed
HYPOTENSION_DAYS = range(8, 11)  # norepinephrine days (reconstructed)
DEXA_DAYS = range(8, 13)
NEUTROPENIA_DAYS = range(1, 39)  # ANC < 0.5 for 38 days (paper: "persisted for 38 days")
HSCT_DAY = 60  # "two months after the infusion"


def _rows() -> dict[str, list[dict]]:
    rng = np.random.default_rng(20220667)
    subj = [
        {
            "subject_id": SUBJECT,
            "sex": "F",
            "age_years": 17,
            "weight_kg": 52,
            "height_cm": 160,
            "disease": "AML",
            "target": "CD7",
            "last_followup_day": HSCT_DAY,
            "source": PAPER,
            "source_note": "sex, age, disease and target from the paper; weight_kg, height_cm and "
            "last_followup_day are reconstructed (not stated)",
            # cartlab convention (an extra column, kept by the spec): the reconstructed columns of a paper row
            "reconstructed_columns": "weight_kg;height_cm;last_followup_day",
        }
    ]

    doses = []
    for d in range(-6, -2):
        doses.append(dict(day=d, agent="decitabine", dose=50, unit="mg"))
    for d in range(-5, -2):
        doses.append(dict(day=d, agent="fludarabine", dose=30, unit="mg/m2"))
        doses.append(dict(day=d, agent="cyclophosphamide", dose=300, unit="mg/m2"))
    doses.append(dict(day=0, agent="CAR-T", dose=1e6, unit="cells/kg"))
    doses.append(dict(day=2, agent="CAR-T", dose=4e6, unit="cells/kg"))
    for r in doses:
        r.update(subject_id=SUBJECT, source=PAPER, source_note=None)
    doses.sort(key=lambda r: (r["day"], r["agent"]))

    obs: list[dict] = []

    def add(day, param, value=None, unit=None, *, analyte=None, text=None, lln=None, uln=None,
            lloq=None, specimen=None, source=RECON, note=None):
        obs.append(
            dict(subject_id=SUBJECT, day=float(day), param=param, analyte=analyte, value=value,
                 value_text=text, unit=unit, lln=lln, uln=uln, lloq=lloq, specimen=specimen,
                 source=source, source_note=note)
        )

    def noisy(x, rel, digits):
        return float(round(x * (1 + rel * rng.standard_normal()), digits))

    # ---- vitals, daily (daily maximum temperature, daily lowest systolic pressure)
    fever_peak_day = 9
    for d in DAYS:
        if d in FEVER_DAYS:
            if d == fever_peak_day:
                add(d, "TEMP", 39.4, "C", source=PAPER,
                    note="maximum temperature stated by the paper; its day is reconstructed")
            else:
                base = 38.3 + 0.8 * np.exp(-(((d - fever_peak_day) / 3.5) ** 2))
                add(d, "TEMP", float(min(round(base + 0.1 * rng.standard_normal(), 1), 39.3)), "C")
        else:
            add(d, "TEMP", float(round(36.7 + 0.25 * rng.random(), 1)), "C")
        sbp = {8: 84, 9: 78, 10: 86}.get(int(d))
        if sbp is None:
            sbp = int(round(112 + 6 * rng.standard_normal() - (8 if d in FEVER_DAYS else 0)))
            sbp = max(sbp, 95)
        add(d, "SYSBP", float(sbp), "mmHg")
        add(d, "DIABP", float(round(sbp * 0.62)), "mmHg")
        hr = 82 + (30 if d in FEVER_DAYS else 0) + 5 * rng.standard_normal()
        add(d, "HR", float(round(hr)), "beats/min")
        add(d, "OXYSAT", float(min(99, round(97.5 + rng.standard_normal()))), "%")

    # ---- blood counts, daily
    for d in DAYS:
        if d in NEUTROPENIA_DAYS:
            if 5 <= d <= 14:
                anc = 0.02 + 0.06 * rng.random()  # <= 0.1 for 10 days
            else:
                anc = 0.15 + 0.3 * rng.random()
            anc = min(round(anc, 2), 0.45)
        elif d < 1:
            anc = {-7: 1.3, -6: 1.2, -5: 1.2, -4: 1.1, -3: 1.0, -2: 0.9, -1: 0.8, 0: 0.7}[int(d)]
        else:  # recovery after day 38
            anc = round(0.6 + 1.4 * (1 - np.exp(-(d - 38) / 8)), 2)
        add(d, "NEUT", float(anc), "10^9/L", lln=1.8, uln=6.3)
        lym = 0.9 if d < -4 else (0.05 if d < 7 else min(0.05 + 0.03 * (d - 7), 1.0))
        add(d, "LYM", float(round(lym, 2)), "10^9/L", lln=1.1, uln=3.2)
        mono = 0.3 if d < -3 else (0.02 if d < 30 else 0.2)
        add(d, "MONO", float(mono), "10^9/L", lln=0.1, uln=0.6)
        wbc = anc + lym + mono + (0.4 if d < 10 else 0.0)  # circulating blasts before clearance
        add(d, "WBC", float(round(wbc, 2)), "10^9/L", lln=3.5, uln=9.5)
        plt_ = 45 - 1.5 * (d + 7) if d < 3 else (12 + 6 * rng.random() if d < 45 else 20 + 0.8 * (d - 45))
        add(d, "PLAT", float(round(plt_)), "10^9/L", lln=125, uln=350)
        hgb = 85 + 6 * rng.standard_normal()
        add(d, "HGB", float(round(hgb)), "g/L", lln=115, uln=150)
        if d <= 9:
            add(d, "PBBLAST", float(max(0, round(6 - 0.6 * (d + 7), 1))), "%")
        elif d % 7 == 3:
            add(d, "PBBLAST", 0.0, "%")

    # ---- chemistry / inflammation, every other day (and daily during CRS)
    for d in DAYS:
        if not (d % 2 == 0 or d in FEVER_DAYS):
            continue
        crp = 4 + 150 * np.exp(-(((d - 9) / 3.2) ** 2)) if d >= 0 else 4.0
        add(d, "CRP", noisy(crp, 0.05, 1), "mg/L", uln=8)
        fer = 900 + 7500 * np.exp(-(((d - 10) / 5) ** 2)) if d >= 0 else 900.0
        add(d, "FERRITIN", noisy(fer, 0.04, 0), "ug/L", uln=150)
        alt = 25 + 260 * np.exp(-(((d - 12) / 3) ** 2)) if d >= 0 else 25.0
        add(d, "ALT", noisy(alt, 0.05, 0), "U/L", uln=40)
        ast = 22 + 215 * np.exp(-(((d - 11) / 3) ** 2)) if d >= 0 else 22.0
        add(d, "AST", noisy(ast, 0.05, 0), "U/L", uln=35)
        bili = 9 + 18 * np.exp(-(((d - 12) / 4) ** 2)) if d >= 0 else 9.0
        add(d, "BILI", noisy(bili, 0.05, 1), "umol/L", uln=21)
        add(d, "CREAT", noisy(55, 0.05, 0), "umol/L", lln=41, uln=81)
        ldh = 260 + 500 * np.exp(-(((d - 9) / 4) ** 2)) if d >= 0 else 300.0
        add(d, "LDH", noisy(ldh, 0.05, 0), "U/L", uln=250)
        fib = 3.2 - 1.4 * np.exp(-(((d - 11) / 4) ** 2)) if d >= 0 else 3.2
        add(d, "FIBRINO", noisy(fib, 0.03, 2), "g/L", lln=2.0, uln=4.0)
        add(d, "K", noisy(3.9, 0.04, 1), "mmol/L", lln=3.5, uln=5.3)
        add(d, "SODIUM", noisy(138, 0.01, 0), "mmol/L", lln=137, uln=147)

    # ---- cytokines (paper: IL-6, IL-10 and IFN-gamma elevated; the numbers are reconstructed)
    for d in (-1, 1, 3, 5, 7, 9, 11, 14, 17, 21, 28):
        add(d, "IL6", noisy(4 + 780 * np.exp(-(((d - 9) / 2.8) ** 2)), 0.05, 1), "pg/mL")
        add(d, "IL10", noisy(3 + 62 * np.exp(-(((d - 8) / 3.0) ** 2)), 0.05, 1), "pg/mL")
        add(d, "IFNG", noisy(5 + 310 * np.exp(-(((d - 10) / 3.0) ** 2)), 0.05, 1), "pg/mL")

    # ---- CAR transgene by qPCR in blood (peak and day-28 values from the paper)
    add(-1, "CARCOPY", text="<50", unit="copies/ug gDNA", lloq=50, specimen="PB",
        note="pre-infusion sample below the limit of quantification; LLOQ reconstructed")
    car = {1: 140, 4: 2300, 7: 21500, 10: 96000, 17: 121000, 21: 41800, 35: 1850, 42: 690,
           49: 240, 56: 95}
    for d, v in car.items():
        add(d, "CARCOPY", float(v), "copies/ug gDNA", lloq=50, specimen="PB")
    add(14, "CARCOPY", 183945.0, "copies/ug gDNA", lloq=50, specimen="PB", source=PAPER,
        note="peak on day 14 stated by the paper; LLOQ reconstructed")
    add(28, "CARCOPY", 5084.0, "copies/ug gDNA", lloq=50, specimen="PB", source=PAPER,
        note="day-28 persistence stated by the paper; LLOQ reconstructed")

    # ---- CD7+ T and NK cells fall, CD7- T cells recover (paper: qualitative only)
    for d in (-7, 0, 7, 14, 21, 28, 42, 60):
        add(d, "CD7T", float(round(320 * np.exp(-max(d, 0) / 3.0) + 2)), "cells/uL", specimen="PB")
        add(d, "CD7NK", float(round(85 * np.exp(-max(d, 0) / 3.0) + 1)), "cells/uL", specimen="PB")
        add(d, "CD7NEGT", float(round(25 + (180 * (1 - np.exp(-max(d - 7, 0) / 10.0)) if d > 7 else 25))),
            "cells/uL", specimen="PB")

    # ---- neurological monitoring: no ICANS (paper); scores reconstructed
    for d in range(0, 22):
        add(d, "ICE", 10.0, "")
        add(d, "LOC", text="alert")

    # ---- marrow and molecular (paper values; the pre-treatment day is placed on day -7)
    pre_note = "stated by the paper before CAR-T; placed on day -7 (day reconstructed)"
    dx_note = "stated by the paper at diagnosis; placed on day -7 as the pre-treatment baseline (day reconstructed)"
    add(-7, "BMBLAST", 20.0, "%", specimen="BM", source=PAPER, note=pre_note)
    add(-7, "MRDFCM", 12.9, "%", specimen="BM", source=PAPER, note=pre_note + "; flow blasts 12.9%")
    add(-7, "TGTBLAST", 95.6, "%", analyte="CD7", specimen="BM", source=PAPER, note=pre_note)
    add(-7, "MOLVAF", 6.0, "%", analyte="ASXL1", specimen="BM", source=PAPER, note=dx_note)
    add(-7, "MOLAR", 59.4, "%", analyte="FLT3-ITD", specimen="BM", source=PAPER, note=dx_note)
    add(-7, "FISHPCT", 72.0, "%", analyte="TP53del", specimen="BM", source=PAPER, note=dx_note)
    add(17, "BMBLAST", 0.0, "%", specimen="BM", source=PAPER, note="no blasts on day 17 (paper)")
    add(17, "MRDFCM", 2.5e-4, "fraction", specimen="BM", source=PAPER, note="flow MRD 2.5e-4 on day 17 (paper)")
    post = "stated by the paper with the day-17 marrow"
    add(17, "MOLAR", 5.9, "%", analyte="FLT3-ITD", specimen="BM", source=PAPER, note=post)
    add(17, "FISHPCT", 9.0, "%", analyte="TP53del", specimen="BM", source=PAPER, note=post)
    add(17, "FUSION", 3.0, "%", analyte="SKAP2::RUNX1", specimen="BM", source=PAPER, note=post)

    obs.sort(key=lambda r: (r["day"], r["param"], r["analyte"] or ""))

    iv = []

    def add_iv(start, end, category, agent=None, dose=None, dose_unit=None, indication=None, note=None):
        iv.append(dict(subject_id=SUBJECT, start_day=start, end_day=end, category=category, agent=agent,
                       dose=dose, dose_unit=dose_unit, indication=indication, source=RECON,
                       source_note=note))

    add_iv(3, 14, "antipyretic", "acetaminophen", 500, "mg", "CRS", "reconstructed supportive care")
    add_iv(min(HYPOTENSION_DAYS), max(HYPOTENSION_DAYS), "vasopressor", "norepinephrine", 0.08,
           "ug/kg/min", "CRS",
           "the paper states hypotension treated with norepinephrine; days and dose reconstructed")
    add_iv(min(DEXA_DAYS), max(DEXA_DAYS), "corticosteroid", "dexamethasone", 5, "mg", "CRS",
           "the paper states low-dose dexamethasone; days and dose reconstructed")
    for d in range(4, 60, 3):
        add_iv(d, None, "platelet_transfusion", "platelets", 1, "units", None,
               "the paper states platelet transfusion dependence; days reconstructed")
    for d in (6, 16, 30, 45):
        add_iv(d, None, "rbc_transfusion", "packed red cells", 2, "units", None, "reconstructed")

    events = [
        dict(subject_id=SUBJECT, day=HSCT_DAY, event="allo_hsct",
             detail="allogeneic HSCT about two months after CAR-T; CR without MRD afterwards",
             attribution=None, source=PAPER,
             source_note="the paper says 'two months after the infusion'; day 60 is approximate"),
    ]
    return {"subjects": subj, "doses": doses, "observations": obs, "interventions": iv, "events": events}


_COLUMNS = {
    "subjects": ["subject_id", "sex", "age_years", "weight_kg", "height_cm", "disease", "target",
                 "last_followup_day", "source", "source_note", "reconstructed_columns"],
    "doses": ["subject_id", "day", "agent", "dose", "unit", "source", "source_note"],
    "observations": ["subject_id", "day", "param", "analyte", "value", "value_text", "unit", "lln",
                     "uln", "lloq", "specimen", "source", "source_note"],
    "interventions": ["subject_id", "start_day", "end_day", "category", "agent", "dose", "dose_unit",
                      "indication", "source", "source_note"],
    "events": ["subject_id", "day", "event", "detail", "attribution", "source", "source_note"],
}

_NUMERIC = {"age_years", "weight_kg", "height_cm", "last_followup_day", "day", "dose", "value", "lln",
            "uln", "lloq", "start_day", "end_day"}


def build_seed_case(out_dir: str | Path) -> Path:
    """Write the seed case study folder (deterministic) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, rows in _rows().items():
        cols = _COLUMNS[name]
        schema = {c: (pl.Float64 if c in _NUMERIC else pl.String) for c in cols}
        df = pl.DataFrame([{c: r.get(c) for c in cols} for r in rows], schema=schema, orient="row")
        df.write_csv(out / f"{name}.csv")
    (out / "README.md").write_text(
        "# Seed case (built-in demo)\n\n"
        f"The CD7 CAR-T patient with r/r AML of {CITATION}.\n\n"
        "Rows with `source=paper` hold values stated in the paper, kept exactly. Rows with\n"
        "`source=reconstructed` are SYNTHETIC: a daily course reconstructed to be consistent with\n"
        "the paper's facts (the paper's figures are not available as numbers). `source_note` says\n"
        "what part of a row is reconstructed. Regenerate with\n"
        "`python -m cartlab.datasets.seed OUT_DIR`.\n",
        encoding="utf-8",
    )
    return out


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(build_seed_case(sys.argv[1] if len(sys.argv) > 1 else "seed_case"))
