"""A readable day-by-day timeline of one subject (for ``cartlab show``)."""

from __future__ import annotations

import polars as pl
from rich.table import Table
from rich.text import Text

from cartlab.model import NOT_MEASURED_SOURCES, Study

#: (column title, param, daily aggregate, number format)
TIMELINE_PARAMS = (
    ("Tmax °C", "TEMP", "max", "{:.1f}"),
    ("SBP min", "SYSBP", "min", "{:.0f}"),
    ("ANC 10⁹/L", "NEUT", "min", "{:.2f}"),
    ("PLT 10⁹/L", "PLAT", "min", "{:.0f}"),
    ("CRP mg/L", "CRP", "max", "{:.0f}"),
    ("IL-6 pg/mL", "IL6", "max", "{:.0f}"),
    ("CAR copies/µg", "CARCOPY", "max", "{:,.0f}"),
)
SYNTHETIC = NOT_MEASURED_SOURCES  # reconstructed, synthetic and simulated values are starred


def _num(v: float | None) -> str:
    """1e6 -> '1×10⁶', 4500000 -> '4.5×10⁶', 30 -> '30'."""
    if v is None:
        return ""
    if v != 0 and (abs(v) >= 1e5 or abs(v) < 1e-3):
        mant, exp = f"{v:.3e}".split("e")
        sup = str(int(exp)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
        return f"{float(mant):g}×10{sup}"
    return f"{v:g}"


def _daily(obs: pl.DataFrame, param: str, how: str) -> pl.DataFrame:
    """One row per calendar day ``d``: the day's value ``v`` (max or min), else its first text ``t``, and
    ``syn``: whether the value shown is not measured. The star follows the row(s) whose value is shown —
    a paper maximum stays unstarred beside reconstructed rows of the same day; on a tie it is starred only
    when every row with that value is not measured."""
    rows = obs.filter(pl.col("param") == param).with_columns(pl.col("day").floor().alias("d"))
    agg = pl.col("value").max() if how == "max" else pl.col("value").min()
    rows = rows.with_columns(
        agg.over("d").alias("v"),
        pl.col("value_text").drop_nulls().first().over("d").alias("t"),
        pl.col("source").cast(pl.String).str.strip_chars().str.to_lowercase().is_in(SYNTHETIC)
        .fill_null(False).alias("_nm"),
    )
    shown = (pl.when(pl.col("v").is_not_null()).then(pl.col("value") == pl.col("v"))
             .otherwise(pl.col("value").is_null() & (pl.col("value_text") == pl.col("t")))
             .fill_null(False))
    rows = rows.with_columns(shown.alias("_shown"))
    return rows.group_by("d").agg(
        pl.col("v").first(),
        pl.col("t").first(),
        pl.when(pl.col("_shown").any()).then(pl.col("_nm").filter(pl.col("_shown")).all())
        .otherwise(pl.col("_nm").any()).alias("syn"),
    )


def subject_timeline(
    study: Study, subject_id: str, *, start: float | None = None, end: float | None = None
) -> tuple[Text, Table, bool]:
    """(header, table, any_synthetic) for one subject: one row per day with data."""
    s = study.subject(subject_id)
    subj = s.subjects.row(0, named=True)
    bits = [subject_id, f"study {study.study_id}"]
    for key, label in (("sex", ""), ("age_years", "y"), ("disease", ""), ("target", "")):
        if subj.get(key) is not None:
            v = subj[key]
            bits.append(f"{v:g}{label}" if isinstance(v, float) else f"{v}{label}")
    header = Text(" · ".join(bits), style="bold")

    days: set[float] = set()
    daily = {}
    for title, param, how, _fmt in TIMELINE_PARAMS:
        d = _daily(s.observations, param, how)
        daily[title] = {r["d"]: r for r in d.iter_rows(named=True)}
        days |= set(daily[title])
    doses = s.doses.with_columns(pl.col("day").floor().alias("d"))
    iv = s.interventions
    ev = s.events.with_columns(pl.col("day").floor().alias("d"))
    days |= set(doses["d"].to_list()) | set(ev["d"].to_list())
    days |= {float(x) for x in s.observations["day"].floor().unique().to_list()}
    lo = start if start is not None else -float("inf")
    hi = end if end is not None else float("inf")
    days = sorted(d for d in days if d is not None and lo <= d <= hi)

    t = Table(show_lines=False, header_style="bold", pad_edge=False)
    t.add_column("day", justify="right")
    t.add_column("doses")
    for title, *_ in TIMELINE_PARAMS:
        t.add_column(title, justify="right")
    t.add_column("interventions")
    t.add_column("events / marrow")
    flagged = False
    for d in days:
        dose_txt = "; ".join(
            f"{r['agent']} {_num(r['orig_dose'])} {r['orig_unit']}"
            for r in doses.filter(pl.col("d") == d).iter_rows(named=True)
        )
        cells = []
        for title, _param, _how, fmt in TIMELINE_PARAMS:
            r = daily[title].get(d)
            if r is None:
                cells.append("")
                continue
            txt = fmt.format(r["v"]) if r["v"] is not None else (r["t"] or "")
            if r["syn"]:
                txt += "*"
                flagged = True
            cells.append(txt)
        active = iv.filter(
            (pl.col("start_day").floor() <= d)
            & (pl.coalesce(pl.col("end_day"), pl.col("start_day")).floor() >= d)
        )
        iv_txt = ", ".join(sorted({r["agent"] or r["category"] for r in active.iter_rows(named=True)}))
        ev_bits = [r["event"] for r in ev.filter(pl.col("d") == d).iter_rows(named=True)]
        marrow = s.observations.filter(
            (pl.col("day").floor() == d) & pl.col("param").is_in(["BMBLAST", "MRDFCM"])
        )
        for r in marrow.iter_rows(named=True):
            ev_bits.append(
                f"{r['param']} {_num(r['orig_value'])} {r['orig_unit'] or ''}".rstrip()
                + ("*" if r["source"] in SYNTHETIC else "")
            )
        t.add_row(f"{d:g}", dose_txt, *cells, iv_txt, "; ".join(ev_bits))
    return header, t, flagged
