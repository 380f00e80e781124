"""A readable day-by-day timeline of one subject (for ``cartlab show``)."""

from __future__ import annotations

import polars as pl
from rich.table import Table
from rich.text import Text

from cartlab.grading.censored import day_extreme, row_intervals
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
    """One row per calendar day ``d``: the day's maximum or minimum as an interval (``lo``/``hi``, open
    ends; ``v`` when it is one number; as the CRS engine reads a day, :func:`cartlab.grading.censored.day_extreme`), in the canonical
    unit, so a censored result (``>38.3``, ``<0.05``) beside numbers is kept; else the day's first
    text ``t`` (a categorical result); and ``syn``: whether the value shown is not measured. The star
    follows the row(s) that set the bound shown -- a paper maximum stays unstarred beside
    reconstructed rows of the same day; on a tie it is starred only when every such row is not
    measured."""
    highest = how == "max"
    rows = obs.filter(pl.col("param") == param).with_columns(
        pl.col("day").floor().alias("d"), pl.int_range(pl.len()).cast(pl.String).alias("ref"),
        pl.col("source").cast(pl.String).str.strip_chars().str.to_lowercase().is_in(SYNTHETIC)
        .fill_null(False).alias("_nm"))
    text = rows.group_by("d").agg(
        pl.col("value_text").filter(pl.col("value").is_null() & pl.col("censor").is_null()).drop_nulls().first()
        .alias("t"),
        pl.col("_nm").filter(pl.col("value").is_null() & pl.col("censor").is_null()).any().alias("_t_nm"))
    bounds = row_intervals(rows)
    if bounds.is_empty():
        ext = pl.DataFrame(schema={"d": pl.Float64, "lo": pl.Float64, "hi": pl.Float64, "lo_open": pl.Boolean,
                                   "hi_open": pl.Boolean, "_b_nm": pl.Boolean})
    else:
        ext = day_extreme(bounds, "x", highest=highest).select(
            "d", pl.col("x_lo").alias("lo"), pl.col("x_hi").alias("hi"),
            pl.col("x_lo_open").alias("lo_open"), pl.col("x_hi_open").alias("hi_open"))
        # the rows that set the bound shown: the kept side (max: the lower end) when known, else the other
        kept, free = ("lo", "hi") if highest else ("hi", "lo")
        b = bounds.join(ext.rename({c: f"_x{c}" for c in ("lo", "hi", "lo_open", "hi_open")}), on="d")
        shown = (pl.when(pl.col(f"_x{kept}").is_not_null())
                 .then((pl.col(kept) == pl.col(f"_x{kept}")) & (pl.col(f"{kept}_open") == pl.col(f"_x{kept}_open")))
                 .otherwise(pl.col(free) == pl.col(f"_x{free}")).fill_null(False))
        ext = ext.join(b.group_by("d").agg(pl.col("_nm").filter(shown).all().alias("_b_nm")), on="d", how="left")
    out = text.join(ext, on="d", how="left")
    point = (pl.col("lo") == pl.col("hi")) & ~pl.col("lo_open") & ~pl.col("hi_open")
    return out.with_columns(
        pl.when(point).then(pl.col("lo")).alias("v"),  # the day's value when one number settles it
        pl.when(pl.col("lo").is_not_null() | pl.col("hi").is_not_null()).then(pl.col("_b_nm"))
        .otherwise(pl.col("_t_nm")).fill_null(False).alias("syn"))


def _cell(r: dict, fmt: str) -> str:
    """A day's value in the column's unit and format: ``38.2``, ``>38.3``, ``<0.05``, ``>=37.0 <39.0``
    (a number and a censored bound that leaves the extreme open); else the given text."""
    lo, hi = r.get("lo"), r.get("hi")
    if lo is None and hi is None:
        return r.get("t") or ""
    if lo is not None and hi is not None and lo == hi and not r["lo_open"] and not r["hi_open"]:
        return fmt.format(lo)
    low = None if lo is None else (">" if r["lo_open"] else ">=") + fmt.format(lo)
    high = None if hi is None else ("<" if r["hi_open"] else "<=") + fmt.format(hi)
    return " ".join(x for x in (low, high) if x is not None)


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
            txt = _cell(r, fmt)
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
            # a censored marrow value ("<0.01" %) has no orig_value: its text as given (review35 C4)
            shown = _num(r["orig_value"]) if r["orig_value"] is not None else (r["value_text"] or "")
            not_measured = (r["source"] or "").strip().lower() in SYNTHETIC
            ev_bits.append(f"{r['param']} {shown} {r['orig_unit'] or ''}".rstrip() + ("*" if not_measured else ""))
        t.add_row(f"{d:g}", dose_txt, *cells, iv_txt, "; ".join(ev_bits))
    return header, t, flagged
