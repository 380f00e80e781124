"""CTCAE grading per row where an input decides which reading of the standard applies (session 34,
review 34), for :mod:`cartlab.grading.ctcae`:

* the baseline status (F5): a row with BASE but no BNRIND, whose rules read BNRIND ("if baseline was
  normal / abnormal": ALT, AST, ALP, GGT, bilirubin), is graded under each status and the readings
  combined (:func:`baseline_readings`, :func:`unknown_baseline_outcomes`); missing is not "normal";
* the unit column (F1): CTCAE v5.0 gives US and SI bounds that are not exact conversions of each
  other; :func:`us_columns` finds the rows whose lab reported the US column's unit and
  :func:`column_note` says which column graded them or what the other column gives.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from cartlab.criteria.model import Leaf, leaves
from cartlab.grading.censored import just_inside
from cartlab.grading.ctcae_criteria import CompiledTable, Entry, Label, _indicator
from cartlab.grading.ctcae_options import CtcaeOptions

__all__ = ["NO_BASELINE", "baseline_readings", "column_note", "no_baseline_mode", "reading_plans",
           "unknown_baseline_outcomes", "us_columns"]


def baseline_readings(table: CompiledTable, entry: Entry, hi: list[str], lo: list[str]) -> list[tuple[str, str]]:
    """The BNRIND values a row without one could have had, when the entry's rules read BNRIND:
    (value, words) for abnormal high and abnormal low (the missing value itself is the normal reading)."""
    read = {_indicator(v) for r in table.decision(entry, hi, lo).rules for cond in r.when for leaf in leaves(cond)
            if isinstance(leaf, Leaf) and leaf.feature == "bnrind"
            for v in (leaf.value if isinstance(leaf.value, tuple) else (leaf.value,))}
    return [(v[0], w) for v, w, which in ((hi, "abnormal high", "high"), (lo, "abnormal low", "low"))
            if v and which in read]


#: option no_baseline (review 48 F3): the reason's words on a row with no baseline at all (BASE and BNRIND
#: empty) whose term reads "if baseline was normal / abnormal"
NO_BASELINE = {
    "normal": "no baseline (BASE empty): 'if baseline was normal' criteria read as baseline normal (admiral)",
    "range": "no baseline (BASE empty): both readings graded (option ctcae.no_baseline=range)",
}
#: the context of the readings of such a row with no_baseline=range (:func:`unknown_baseline_outcomes`)
NO_BASELINE_CONTEXT = "no baseline (BASE and BNRIND missing; option ctcae.no_baseline=range)"


def no_baseline_mode(tabs: list[CompiledTable]) -> str:
    """Option ``no_baseline`` of the first table ("normal" when the table does not declare it)."""
    return str((tabs[0].options.get("no_baseline") if tabs else None) or "normal")


def reading_plans(part: pl.DataFrame, readings: list[tuple[str, str]], table_options: Any,
                  plans: dict[Any, list[pl.LazyFrame]], grade: Any) -> None:
    """The rows of one dispatch partition graded under the abnormal baseline readings (appended to
    ``plans`` per reading; ``grade``: the partition's rule set), for :func:`unknown_baseline_outcomes`:

    * a row with BASE but no BNRIND (session 34, review 34 F5): with that BNRIND;
    * a row with neither (no baseline at all), only with option ``no_baseline="range"`` (review 48 F3;
      the default "normal" is admiral's reading, ``!(BNRIND %in% high_indicator)`` with NA not high): with
      the BNRIND and BASE at both ends of what it allows, abnormal high BASE just above the row's ANRHI and
      far above it (1e12), abnormal low just below ANRLO and near 0 (the baseline's own limits unknown:
      the row's, cartlab convention; grades are monotone in BASE, so the ends bound them). ALT 130 U/L,
      ULN 40: grade 2 if normal, 2 at BASE 40+ (130 > 3 x 40), 0 at a large BASE: grade 0-2."""
    unknown = part.filter(pl.col("bnrind").is_null() & pl.col("base").is_not_null())
    for value, words in readings if unknown.height else ():
        plans.setdefault(words, []).append(grade(unknown.with_columns(pl.lit(value, dtype=pl.String).alias("bnrind"))))
    if (table_options.get("no_baseline") or "normal") != "range":
        return
    none = part.filter(pl.col("bnrind").is_null() & pl.col("base").is_null() & pl.col("aval").is_not_null())
    digits = table_options.get("signif_digits")
    for value, words in readings if none.height else ():
        high = words == "abnormal high"
        lim = pl.col("anrhi" if high else "anrlo")
        rows = none.filter(lim.is_not_null())
        ends = ((just_inside(pl.lit(">" if high else "<"), lim, digits), "just above ANRHI" if high else "just below ANRLO"),
                (pl.lit(1e12) if high else lim * 1e-9, "far above ANRHI" if high else "near 0"))
        for base, where in ends if rows.height else ():
            plans.setdefault((NO_BASELINE_CONTEXT, f"{words} (BASE {where})"), []).append(grade(rows.with_columns(
                pl.lit(value, dtype=pl.String).alias("bnrind"), base.alias("base"))))


def unknown_baseline_outcomes(gid: np.ndarray, gmax: np.ndarray, miss: np.ndarray, labels: list[Label],
                              alt_pieces: dict[Any, list[pl.LazyFrame]], context: str) -> dict[int, int]:
    """Rows graded under more than one baseline reading (see :func:`cartlab.grading.ctcae._grade_codes`):
    where the readings disagree, the outcome becomes the lower reading's rule with a reason naming
    every reading (in place; appends to ``labels``); returns the new outcomes whose grade is left
    open (id -> the highest grade any reading gives). A key of ``alt_pieces`` is the reading's words,
    or (context, words) for readings of other rows said with another context (:func:`reading_plans`)."""
    groups: dict[str, dict[str, list[pl.LazyFrame]]] = {}
    for k, plans in alt_pieces.items():
        ctx, words = k if isinstance(k, tuple) else (context, k)
        groups.setdefault(ctx, {})[words] = plans
    out: dict[int, int] = {}
    for ctx, pieces in groups.items():  # disjoint rows: BASE without BNRIND, no baseline at all
        out.update(_reading_outcomes(gid, gmax, miss, labels, pieces, ctx))
    return out


def _reading_outcomes(gid: np.ndarray, gmax: np.ndarray, miss: np.ndarray, labels: list[Label],
                      alt_pieces: dict[str, list[pl.LazyFrame]], context: str) -> dict[int, int]:
    """:func:`unknown_baseline_outcomes` for the readings of one context."""
    out: dict[int, int] = {}
    grade_of = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)
    n = gid.shape[0]
    # per reading: the outcome and the highest grade left open, over all rows (-2: not graded so)
    reads: list[tuple[str, np.ndarray, np.ndarray]] = []
    for words, plans in alt_pieces.items():
        reads.append((words, *read_plans(plans, n)))
    rows = np.flatnonzero(np.any(np.stack([g >= 0 for _, g, _ in reads]), axis=0))
    if not rows.size:
        return out
    # the few distinct combinations of outcomes are decided once, then scattered back to their rows
    keys = np.stack([gid[rows].astype(np.int64), gmax[rows]] + [a[rows] for _, g, h in reads for a in (g, h)], axis=1)
    uniq, inverse = np.unique(keys, axis=0, return_inverse=True)
    new_gid = np.full(len(uniq), -1, dtype=np.int64)  # -1: the normal reading's outcome stands
    for u, k in enumerate(uniq.tolist()):
        outs = [("normal", k[0], k[1])] + [(w, k[2 + 2 * r], k[3 + 2 * r]) for r, (w, _, _) in enumerate(reads)
                                           if k[2 + 2 * r] >= 0]
        grades = [int(grade_of[o]) for _, o, _ in outs]
        highs = [max(gr, hm) for gr, (_, _, hm) in zip(grades, outs)]
        if len(set(grades)) == 1 and len(set(highs)) == 1:
            continue  # the readings agree
        if min(grades) < 0:  # a reading cannot be graded: neither can the row
            pick, lo_g, hi_g = grades.index(-1), -1, -1
        else:
            pick, lo_g, hi_g = grades.index(min(grades)), min(grades), max(highs)
        g0, rule, reason = labels[outs[pick][1]]
        each = ", ".join(f"grade {gr if gr >= 0 else 'not gradable'} if it was {w}" for (w, _, _), gr in zip(outs, grades))
        text = f"{reason}; {context}: {each}"
        if hi_g > lo_g >= 0:
            text += f"; at least grade {lo_g} (grade {hi_g} not excluded: baseline normal/abnormal not known)"
            out[len(labels)] = hi_g
        new_gid[u] = len(labels)
        labels.append((g0, rule, text))
    apply_new_outcomes(rows, inverse, new_gid, gid, gmax, miss)
    return out


def read_plans(plans: list[pl.LazyFrame], n: int) -> tuple[np.ndarray, np.ndarray]:
    """One reading's plans (pieces giving ``_row``, ``_gid``, ``_gmax``) collected over the ``n`` rows: per
    row the outcome id (-2: not graded so) and the highest grade left open (-1: none)."""
    g = np.full(n, -2, dtype=np.int64)
    h = np.full(n, -1, dtype=np.int64)
    for piece in pl.collect_all(plans):
        at = piece["_row"].to_numpy()
        g[at] = piece["_gid"].to_numpy()
        h[at] = piece["_gmax"].fill_null(-1).to_numpy()
    return g, h


def apply_new_outcomes(rows: np.ndarray, inverse: np.ndarray, new_gid: np.ndarray, gid: np.ndarray,
                       gmax: np.ndarray, miss: np.ndarray) -> None:
    """In place: the ``rows`` whose unique input (``inverse``) got a new outcome (``new_gid`` >= 0) take it;
    their open grade and missing input are said in the new reason, so not again by ``ctcae_summary.open_grades``."""
    per_row = new_gid[inverse.reshape(-1)]
    changed = rows[per_row >= 0]
    gid[changed] = per_row[per_row >= 0]
    gmax[changed] = -1
    miss[changed] = None


def us_columns(f: pl.DataFrame, pmap: dict, us_tabs: list[CompiledTable]) -> pl.DataFrame:
    """Per (param, reported unit): for each direction, the unit of the US-table entry of the param's
    term when the lab reported that column's unit (a unit of the US entry's dimension that the SI
    entry's unit does not share: calcium in mg/dL, not g/dL haemoglobin against g/L) and the map
    canonical -> that unit (``_u{L,H}``, ``_s{L,H}``, ``_o{L,H}``: US = (canonical - o) / s)."""
    from cartlab.io.dictionary import load_dictionary
    from cartlab.units import UnitError, conversion

    def fits(unit: str, target: str | None) -> bool:
        if not target:
            return False
        try:
            conversion(unit, target)
            return True
        except UnitError:
            return False

    d = load_dictionary()
    rows = []
    for param, orig in f.select("param", "_ounit").unique().drop_nulls().iter_rows():
        row: dict[str, Any] = {"param": param, "_ounit": orig}
        for direction in ("L", "H"):
            si = pmap.get((param, direction))
            if si is None or si.unit is None or fits(orig, si.unit) or param not in d.params:
                continue
            for tb in us_tabs:
                # an entry whose mg/dL bounds are admiral's conversions, not a CTCAE column (ionized calcium)
                own = {str(e["id"]) for e in tb.model.extra("terms") if e.get("ctcae_us_column", True)}
                us = next((e for e in tb.index.get((si.term_key, direction), ())
                           if e.unit and e.entry_id in own and fits(orig, e.unit)), None)
                if us is not None:
                    try:
                        conv = d[param].conversion_from(us.unit)
                    except UnitError:
                        continue
                    row.update({f"_u{direction}": us.unit, f"_s{direction}": conv.scale, f"_o{direction}": conv.offset})
                    break
        rows.append(row)
    schema = {"param": pl.String, "_ounit": pl.String, **{f"_{k}{d}": (pl.String if k == "u" else pl.Float64)
                                                         for d in ("L", "H") for k in ("u", "s", "o")}}
    out = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return f.join(out, on=["param", "_ounit"], how="left", maintain_order="left")


def column_note(f: pl.DataFrame, graded_input: Any, grade_codes: Any, tabs: list[CompiledTable],
                options: CtcaeOptions, reported: bool) -> pl.DataFrame:
    """grade_reason of rows whose lab reported a US unit (session 34, review 34 F1): with
    ``criteria_units_by_row="reported"`` which column graded them; with "si" (default), when CTCAE's
    column of the reported unit gives another grade than the SI column, that grade."""
    def shown(d: str) -> pl.Expr:  # the value in the US column's unit, 6 significant digits
        return ((pl.col("_aval") - pl.col(f"_o{d}")) / pl.col(f"_s{d}")).round_sig_figs(6)

    notes = []
    if reported:  # one note per row (both directions of a param share the reported unit)
        notes.append(pl.coalesce([
            pl.when(pl.col(f"_u{d}").is_not_null() & pl.col(f"ATOXDSC{d}").is_not_null() & pl.col("_cens").is_null())
            .then(pl.format("graded on CTCAE's {} column (the lab reported {}: {} {}; option "
                            "ctcae.criteria_units_by_row=reported)", pl.col(f"_u{d}"), pl.col("_ounit"), shown(d),
                            pl.col(f"_u{d}")))
            for d in ("L", "H")]))
    else:
        us_in = graded_input(pl.col("_aval"), pl.col("_cens").is_null(), "us")
        if us_in[0].height + us_in[1].height == 0:
            return f
        codes, labels, _ = grade_codes(pl.concat(us_in).drop("_i"), tabs, options)
        grade = np.array([-1 if g is None else g for g, _, _ in labels], dtype=np.int64)[codes.to_numpy()]
        idx = pl.concat(us_in)["_i"].to_numpy()
        n_low = us_in[0].height
        for d, sl in (("L", slice(0, n_low)), ("H", slice(n_low, None))):
            g = np.full(f.height, -1, dtype=np.int64)
            g[idx[sl]] = grade[sl]
            col = f"_us{d}"
            f = f.with_columns(pl.Series(col, g, dtype=pl.Int64))
            val = shown(d)
            notes.append(pl.when((pl.col(col) >= 0) & pl.col(f"ATOXGR{d}").is_not_null() & (pl.col(col) != pl.col(f"ATOXGR{d}")))
                         .then(pl.format("CTCAE's {} column gives {} grade {} for {} {}; graded on the SI column, grade "
                                         "{} (option ctcae.criteria_units_by_row=si; 'reported' grades on the column "
                                         "of the reported unit)", pl.col(f"_u{d}"), pl.col(f"ATOXDSC{d}"), pl.col(col),
                                         val, pl.col(f"_u{d}"), pl.col(f"ATOXGR{d}"))))
    note = pl.concat_str(notes, separator="; ", ignore_nulls=True)
    return f.with_columns(pl.when(note.is_not_null() & (note != "")).then(
        pl.concat_str([pl.col("grade_reason").cast(pl.String), note], separator="; "))
        .otherwise(pl.col("grade_reason").cast(pl.String)).cast(pl.Categorical).alias("grade_reason"))
