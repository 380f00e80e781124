"""SDTM import (``cartlab.io.sdtm.read_sdtm``) of an n-subject synthetic cohort written as SAS XPT v5
(default n = 1,000: ~1.5 M LB/VS records), against a plain ``pandas.read_sas`` + row-loop mapping.

Run: ``.venv/bin/python benchmarks/run.py --only sdtm [--n N] [--json out.json]``. The setup (untimed)
writes the cohort with ``synthetic_cohort`` and converts it with ``write_sdtm(..., fmt="xpt")``.
Both phases report rows per second over the LB + VS records read.
"""

from __future__ import annotations

from pathlib import Path

from harness import benchmark


def generate(params: dict) -> dict:
    """Untimed: synthetic cohort -> Study -> SDTM XPT folder; the record counts of LB and VS."""
    import pyreadstat

    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.io import read_study
    from cartlab.io.sdtm.writer import write_sdtm

    work = Path(params["workdir"])
    study = read_study(synthetic_cohort(params["n"], seed=0, out_dir=work / "cohort"))
    folder = write_sdtm(study, work / "sdtm", fmt="xpt")
    rows = {}
    for dom in ("lb", "vs"):
        df, _ = pyreadstat.read_xport(str(folder / f"{dom}.xpt"), usecols=["USUBJID"])  # v5 stores no row count
        rows[dom] = len(df)
    return {"_path": str(folder), "lb_rows": rows["lb"], "vs_rows": rows["vs"], "rows": rows["lb"] + rows["vs"]}


def pandas_loop(params: dict) -> dict:
    """Baseline: ``pd.read_sas`` of DM, LB and VS, then a Python loop over the records: test code ->
    param (dictionary), unit conversion (one cached pint conversion per (param, unit)), --DTC ->
    datetime -> day from RFXSTDTC; rows collected as tuples, then one DataFrame."""
    import math
    from datetime import datetime

    import pandas as pd

    from cartlab.io.dictionary import load_dictionary

    folder = Path(params["_path"])
    d = load_dictionary()
    dm = pd.read_sas(folder / "dm.xpt", format="xport", encoding="utf-8")
    anchor = {s: datetime.fromisoformat(r) for s, r in zip(dm["USUBJID"], dm["RFXSTDTC"], strict=True)}
    conv: dict = {}
    out = []
    n = 0
    for dom in ("LB", "VS"):
        df = pd.read_sas(folder / f"{dom.lower()}.xpt", format="xport", encoding="utf-8")
        cols = [df[f"{dom}{c}"].tolist() for c in ("TESTCD", "STRESN", "STRESU", "DTC")]
        for sid, code, val, unit, dtc in zip(df["USUBJID"].tolist(), *cols, strict=True):
            n += 1
            if code not in d or math.isnan(val):
                continue
            key = (code, unit or "")
            c = conv.get(key)
            if c is None:
                c = conv[key] = d[code].conversion_from(unit or "")
            day = (datetime.fromisoformat(dtc) - anchor[sid]).total_seconds() / 86400.0
            out.append((sid, day, code, c(val), d[code].unit))
    frame = pd.DataFrame(out, columns=["subject_id", "day", "param", "value", "unit"])
    return {"rows": n, "mapped": len(frame)}


@benchmark(
    "sdtm",
    title="SDTM XPT import (LB + VS) of a synthetic cohort",
    setup=generate,
    baseline=pandas_loop,
    requires=("cartlab.io.sdtm", "pyreadstat"),
    baseline_requires=("pandas", "cartlab.io.dictionary"),
)
def import_sdtm(params: dict) -> dict:
    """``read_sdtm`` of the folder with its mapping report (every record accounted for)."""
    from cartlab.io.sdtm import read_sdtm

    imp = read_sdtm(params["_path"], report=True)
    rep = imp.report
    lbvs = rep.filter(rep["domain"].is_in(["LB", "VS"]))
    return {"rows": int(lbvs["n_rows"].sum()), "mapped": int(lbvs["n_mapped"].sum()),
            "observations": imp.study.observations.height}
