"""Warnings of the study folder reader about cells that are read but probably not meant as written
(session 39, review 39): a misspelled optional column kept as an extra column, a dose unit that does
not fit its agent, a reference range upside down, a marrow parameter measured in blood, and a "did you
mean" for a vocabulary word. None of them makes a study invalid (study-format spec: extra columns are
kept, the unit and specimen lists are not paired with agents or parameters); each names the file, the
rows and the column.
"""

from __future__ import annotations

import difflib
import re

import polars as pl

from cartlab.io.errors import Issue
from cartlab.io.schema import vocab_key

__all__ = ["NEAR_COLUMN_CUTOFF", "did_you_mean", "dose_unit_kind", "near_miss_columns", "reference_and_specimen"]

#: how close (difflib ratio, 0-1) an extra column's name must be to a missing format column to be
#: named as a probable misspelling of it ("atribution" / "attribution" = 0.95; "end_date" / "end_day" = 0.8)
NEAR_COLUMN_CUTOFF = 0.85
#: canonical dose units (schema.DOSE_UNITS) by kind: a CAR-T dose counts cells, a chemotherapy dose weighs
CELL_UNITS = ("cells/kg", "cells")
MASS_UNITS = ("mg/m2", "mg", "mg/kg")
#: parameters measured in bone marrow (params_v1.yaml group "marrow", morphology): a peripheral-blood
#: specimen contradicts the parameter (PBBLAST is the blood one)
MARROW_ONLY = ("BMBLAST", "BMCELL")


def _fold(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", name.strip().lower())


def near_miss_columns(fname: str, header: list[str], extra: list[str], known: tuple[str, ...]) -> list[Issue]:
    """A warning per extra column whose name is close (difflib, :data:`NEAR_COLUMN_CUTOFF`) to a format
    column of the file that the header lacks: its values are kept as an extra column (spec: "Unknown
    extra columns are kept and passed through") but no rule reads them, so a misspelled ``atribution``
    leaves every attribution unknown."""
    present = {_fold(c) for c in header}
    missing = {_fold(c): c for c in known if _fold(c) not in present}
    out = []
    for c in extra:
        hit = difflib.get_close_matches(_fold(c), list(missing), n=1, cutoff=NEAR_COLUMN_CUTOFF)
        if hit:
            out.append(Issue(fname, c, f"column {c!r} is not a column of the study format and is kept as an extra "
                             f"column (its values are not used by any analysis): did you mean {missing[hit[0]]!r}?",
                             severity="warning"))
    return out


def did_you_mean(value: object, allowed: tuple[str, ...]) -> str:
    """`` (did you mean 'gcsf'?)`` for a vocabulary word close to an allowed one (case, spaces, hyphens
    and underscores folded as the reader matches them; an abbreviation of a multi-word value such as
    HFNC for high_flow_nasal_cannula counts), else ``""``."""
    key = vocab_key(value)
    keys = {vocab_key(a): a for a in allowed}
    squeezed = key.replace("_", "")
    hits = [a for k, a in keys.items() if k.replace("_", "") == squeezed]
    hits += [a for k, a in keys.items() if "_" in k and "".join(w[0] for w in k.split("_")) == squeezed]
    hits += [a for k, a in keys.items() if "_" in key and "".join(w[0] for w in key.split("_")) == k]  # bone marrow
    hits += [keys[k] for k in difflib.get_close_matches(key, list(keys), n=2, cutoff=0.75)]
    hits += [a for k, a in keys.items() if len(key) >= 5 and (key in k or k in key)]
    seen = list(dict.fromkeys(hits))[:2]
    return f" (did you mean {' or '.join(repr(a) for a in seen)}?)" if seen else ""


def dose_unit_kind(doses: pl.DataFrame, fname: str, row: str) -> list[Issue]:
    """A warning per dose row whose (canonical) unit does not fit its agent's kind: a CAR-T dose in a
    mass unit (a CAR-T dose counts cells: cells/kg or cells), or a lymphodepletion chemotherapy of the
    alias table (grading/ld_agents.yaml) in cells (it is dosed in mg/m2, mg or mg/kg). The spec does
    not pair agent and unit, so the row is kept; the per-dose kinetics (Stein) and exposure-response
    leave out a CAR-T dose they cannot form. Other agents (a donor lymphocyte infusion in cells/kg) are
    not checked."""
    from cartlab.grading.ld_agents import canonical_agent_expr, known_agents  # lazy: grading imports io
    from cartlab.kinetics.agents import car_t_agent_expr  # lazy: kinetics imports the readers

    if doses.height == 0 or not {"agent", "unit"} <= set(doses.columns):
        return []
    car = car_t_agent_expr(pl.col("agent"))
    chemo = canonical_agent_expr(pl.col("agent")).is_in(list(known_agents())) & ~car
    unit = pl.col("orig_unit") if "orig_unit" in doses.columns else pl.col("unit")
    bad = (doses.filter((car & pl.col("unit").is_in(MASS_UNITS)) | (chemo & pl.col("unit").is_in(CELL_UNITS)))
           .with_columns(car.alias("__car"), unit.alias("__unit_as_written"))
           .group_by("__car", "agent", "__unit_as_written", maintain_order=True).agg(pl.col(row).sort()))
    out = []
    for is_car, agent, u, rows in bad.iter_rows():
        if is_car:
            msg = (f"a CAR-T dose ({agent!r}) in {u}: CAR-T doses are cells or cells/kg; the per-dose kinetics "
                   "(Stein) and exposure-response cannot use it: check the unit")
        else:
            msg = (f"a chemotherapy dose ({agent!r}) in {u}: lymphodepletion agents are dosed in mg/m2, mg or "
                   "mg/kg: check the unit")
        out.append(Issue(fname, "unit", msg, rows, severity="warning"))
    return out


def reference_and_specimen(r) -> None:
    """Warnings on ``r`` (the observations file reader, values converted): a reference range whose
    lln is above its uln (swapped?; the flags high/low then read it as given), and a marrow-only
    parameter (:data:`MARROW_ONLY`) whose specimen is PB (the response engine reads it as the marrow
    value)."""
    r.flag(pl.col("lln").is_finite() & pl.col("uln").is_finite() & (pl.col("lln") > pl.col("uln")), "lln",
           lambda v: f"lln {float(v[1]):g} is above uln {float(v[2]):g} ({v[0]}): swapped? the reference range is read as given",
           by=pl.concat_list(pl.col("param"), pl.col("orig_lln").cast(pl.String), pl.col("orig_uln").cast(pl.String)),
           severity="warning")
    r.flag(pl.col("param").is_in(MARROW_ONLY) & (pl.col("specimen") == "PB"), "specimen",
           lambda v: f"{v} is measured in bone marrow, but the specimen is PB (peripheral blood): the response "
           "assessment reads it as the marrow value; check the param (PBBLAST for blood blasts) or the specimen",
           by="param", severity="warning")


#: the per-uL spellings of a blood count (the unit as written, folded) that :func:`suspicious_values` checks
PER_UL = ("/ul", "cells/ul", "/mm3", "/µl", "cells/µl", "/mm^3", "cells/mm3")


def _suspicious_message(p, bound: str, unit: str, lo: str, hi: str, lo_c: str, hi_c: str, n: str) -> str:
    """The warning of :func:`suspicious_values` for the ``n`` values of one parameter, unit (as written) and side."""
    shown = unit or "(no unit)"
    if lo == hi:
        what = f"{p.code} value {float(lo):g} {shown} (= {float(lo_c):g} {p.unit}) is"
    else:
        what = (f"{p.code} values {float(lo):g}-{float(hi):g} {shown} (= {float(lo_c):g}-{float(hi_c):g} {p.unit}; "
                f"{n} rows) are")
    return f"{what} {bound} {p.unit}: is the unit right? ({p.suspicious_why}); read as given"


def suspicious_values(r, d) -> None:
    """Warnings on ``r`` (the observations file reader, values converted) for values that usually mean a
    wrong unit but can be real (session 45, review 45 folder F3 / hemato F4), read as given: outside a
    parameter's ``suspicious`` bounds (params_v1.yaml, each with its ``suspicious_why``), and a blood
    count with ``whole_per_ul`` written with a fraction in a per-uL unit (ANC 2.5 /uL)."""
    for code, p in d.params.items():
        if p.suspicious is None:
            continue
        lo, hi = p.suspicious
        # each side its own message: "below 10" / "above 1768" (review 47 F2: CREAT has both sides)
        sides = ([(pl.col("value") < lo, f"below {lo:g}")] if lo is not None else []) + (
            [(pl.col("value") > hi, f"above {hi:g}")] if hi is not None else [])
        # one warning per unit as written (session 48: a mislabelled unit gave one line per distinct value),
        # with the values' range and count; the rows are listed on the issue
        unit = pl.col("orig_unit").fill_null("")
        span = [c.cast(pl.String) for x in ("orig_value", "value") for c in
                (pl.col(x).min().over(unit), pl.col(x).max().over(unit))]
        for out, bound in sides:
            r.flag((pl.col("param") == code) & pl.col("value").is_finite() & out, "value",
                   lambda v, p=p, bound=bound: _suspicious_message(p, bound, *v),
                   by=pl.concat_list(unit, *span, pl.len().over(unit).cast(pl.String)),
                   severity="warning")
    whole = [code for code, p in d.params.items() if p.whole_per_ul]
    unit = pl.col("orig_unit").str.strip_chars().str.to_lowercase().str.replace_all(r"\s+", "")
    frac = pl.col("orig_value") != pl.col("orig_value").floor()
    r.flag(pl.col("param").is_in(whole) & unit.is_in(PER_UL) & pl.col("orig_value").is_finite() & frac, "value",
           lambda v: f"{v[0]} value {float(v[1]):g} {v[2]}: a blood count per uL is a whole number of cells; "
           f"{float(v[1]):g} {v[2]} is usually {float(v[1]):g} x10^3/uL (= 10^9/L): is the unit right? read as given",
           by=pl.concat_list(pl.col("param"), pl.col("orig_value").cast(pl.String), pl.col("orig_unit")),
           severity="warning")
