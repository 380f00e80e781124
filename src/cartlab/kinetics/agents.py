"""Which dosing rows are CAR-T infusions: one definition for the kinetics engines and the figures."""

from __future__ import annotations

import functools
import re
from importlib import resources

import polars as pl
import yaml

__all__ = ["car_t_agent_expr", "car_t_infusions", "is_car_t_agent", "other_cell_therapy_expr", "split_dose_gap_expr"]

#: the word CAR-T in an agent name, lower case: "CAR-T", "CD7 CAR-T", "CAR T", "car_t", "CART19", with a
#: letter before it ("UCART19", "huCART19-IL18") and a plural or "cells" after the T ("CARTs", "CAR-Ts",
#: "CAR-T cells", "CAR-Tcells"); not "carteolol", "cartilage", "cartridge" (another letter after the T).
#: Review s38 B5 (was any name containing "cart") and review 38 diff1 F3 (UCART, plurals).
_CAR_T_WORD = r"car[\s_\-]*t(s|[\s_\-]*cells?)?([^a-z]|$)"


@functools.cache
def product_names() -> frozenset[str]:
    """Brand, INN and short names of the marketed CAR-T products (``car_t_products.yaml``), normalised."""
    return frozenset(_norm(p[k]) for p in _data()["products"] for k in ("brand", "inn", "short") if p.get(k))


@functools.cache
def _data() -> dict:
    return yaml.safe_load(resources.files("cartlab.kinetics").joinpath("car_t_products.yaml").read_text("utf-8"))


@functools.cache
def not_car_t_names() -> frozenset[str]:
    """Cell therapies with the ``-leucel`` stem that are not CAR-T (``car_t_products.yaml`` not_car_t)."""
    return frozenset(_norm(p[k]) for p in _data().get("not_car_t", []) for k in ("brand", "inn", "short") if p.get(k))


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.lower())


_SEP = r"[\s_\-]*"


@functools.cache
def _product_word() -> str:
    """A regex (lower-case text) of any product name (:func:`product_names`) as a whole word among other words:
    "Kymriah (tisagenlecleucel)", "axi-cel (Yescarta)", "tisagenlecleucel 2nd infusion", "obe-cel dose 2"
    (review45 F2: a name had to be the whole agent). Spaces, hyphens and underscores are ignored inside a
    name, as :func:`_norm` ignores them ("tisa cel", "tisacel"); a letter or digit must not touch either end
    ("tisa-celx" is not tisa-cel)."""
    return _word(product_names())


def is_car_t_agent(agent: str | None) -> bool:
    """``CAR-T``, ``CD7 CAR-T``, ``car_t``, ``CART19``, ``UCART19``, ``CAR-Ts``, an INN with the CAR stem ``-cabtagene``
    (``axicabtagene ciloleucel``), and the marketed products by brand, INN or short name (``Kymriah``,
    ``tisagenlecleucel``, ``axi-cel``; ``car_t_products.yaml``), also as a word among others ("Kymriah
    (tisagenlecleucel)", "tisagenlecleucel 2nd infusion"; review45 F2). Not the ``-leucel`` stem alone: it
    names cell therapies in general (tabelecleucel, lifileucel are not CAR-T; review s38 B5).

    >>> [is_car_t_agent(a) for a in ("CD7 CAR-T", "tisagenlecleucel", "Kymriah", "axi-cel", "fludarabine", None)]
    [True, True, True, True, False, False]
    >>> [is_car_t_agent(a) for a in ("tabelecleucel", "carteolol", "Aucatzyl")]
    [False, False, True]
    >>> [is_car_t_agent(a) for a in ("UCART19", "huCART19-IL18", "CARTs", "CAR-Tcells", "cartilage")]
    [True, True, True, True, False]
    >>> [is_car_t_agent(a) for a in ("Kymriah (tisagenlecleucel)", "axi-cel (Yescarta)", "liso-cel CD8 component")]
    [True, True, True]
    >>> [is_car_t_agent(a) for a in ("tisagenlecleucel 2nd infusion", "obe-cel dose 2", "kymriahx", "pre-Kymriah2")]
    [True, True, False, False]
    """
    a = _norm(agent or "")
    low = (agent or "").lower()
    return (bool(re.search(_CAR_T_WORD, low)) or "cabtagene" in a or a in product_names()
            or bool(re.search(_product_word(), low)))


def _word(names) -> str:
    alts = sorted((_SEP.join(re.escape(ch) for ch in n) for n in names), key=len, reverse=True)
    return r"(?:^|[^a-z0-9])(?:" + "|".join(alts) + r")(?:[^a-z0-9]|$)"


def split_dose_gap_expr(agent: pl.Expr, gap_days: float) -> pl.Expr:
    """The largest gap (days) after the previous CAR-T infusion at which an infusion of ``agent`` is still a
    fraction of one split dose: ``max(gap_days, the product's split_dose_window_days)`` for a product with a
    labelled split dose (``car_t_products.yaml``: obe-cel, Day 1 and Day 10 +/- 2, up to Day 21; review45 F1),
    else ``gap_days`` (``kinetics.split_dose_gap_days``)."""
    low = agent.fill_null("").str.to_lowercase()
    out = pl.lit(float(gap_days))
    for p in _data()["products"]:
        w = p.get("split_dose_window_days")
        names = [_norm(p[k]) for k in ("brand", "inn", "short") if p.get(k)]
        if w is not None and float(w) > gap_days and names:
            out = pl.when(low.str.contains(_word(names))).then(pl.lit(float(w))).otherwise(out)
    return out


def car_t_agent_expr(agent: pl.Expr) -> pl.Expr:
    """:func:`is_car_t_agent` as a polars expression (null agent -> False), for whole columns."""
    low = agent.fill_null("").str.to_lowercase()
    a = low.str.replace_all(r"[\s_\-]", "")
    return (low.str.contains(_CAR_T_WORD) | a.str.contains("cabtagene", literal=True)
            | a.is_in(sorted(product_names())) | low.str.contains(_product_word()))


def other_cell_therapy_expr(agent: pl.Expr) -> pl.Expr:
    """An agent with the cell-therapy stem ``-leucel`` (or a listed non-CAR-T cell therapy) that is not a
    CAR-T (:func:`is_car_t_agent`): not a CAR-T infusion; the kinetics warn about such dosing rows."""
    a = agent.fill_null("").str.to_lowercase().str.replace_all(r"[\s_\-]", "")
    return (a.str.ends_with("leucel") | a.is_in(sorted(not_car_t_names()))) & ~car_t_agent_expr(agent)


def car_t_infusions(study) -> pl.DataFrame:
    """The CAR-T infusions of a study (its ``doses`` rows, columns kept) on the day axis, with the clock
    time of ``subjects.infusion_datetime`` where the dose row has none.

    Spec "subjects.csv": ``infusion_datetime`` is the "calendar anchor of day 0", and kinetics count
    "time from the first CAR-T infusion". A dose row on day 0 given without a clock time (``day`` 0, or
    a date alone) is therefore at the subject's ``infusion_datetime`` time (10:00 -> day 0.4167); a
    dose row with its own time keeps it. A subject with a timed ``infusion_datetime`` and no CAR-T dose
    row gets one row at that time (``dose`` empty), so its samples count from the infusion, not from
    midnight.
    """
    from cartlab.io.clock import day_number, day_zero, wall_clock

    d = study.doses.filter(pl.col("day").is_not_null() & car_t_agent_expr(pl.col("agent")))
    s = study.subjects
    if "infusion_datetime" not in s.columns or s.height == 0:
        return d
    at = s.select("subject_id", day_number(
        wall_clock(pl.col("infusion_datetime")),
        day_zero(pl.col("infusion_datetime"), pl.col("infusion_date") if "infusion_date" in s.columns
                 else pl.lit(None, dtype=pl.String))).alias("_at")).filter(pl.col("_at") > 0)
    if at.height == 0:
        return d
    untimed = pl.col("datetime").is_null() | pl.col("datetime").cast(pl.String).str.strip_chars().str.contains(
        r"^\d{4}-\d{2}-\d{2}$").fill_null(False) if "datetime" in d.columns else pl.lit(True)
    d = d.join(at, on="subject_id", how="left").with_columns(
        pl.when((pl.col("day") == 0) & untimed & pl.col("_at").is_not_null()).then(pl.col("_at"))
        .otherwise(pl.col("day")).alias("day")).drop("_at")
    missing = at.filter(~pl.col("subject_id").is_in(d["subject_id"].unique().implode()))
    if missing.height:
        extra = missing.select("subject_id", pl.col("_at").alias("day"), pl.lit("CAR-T").alias("agent"))
        d = pl.concat([d, extra], how="diagonal_relaxed")
    return d
