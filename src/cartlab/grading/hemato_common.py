"""Helpers shared by the haematotoxicity engines (N-ICAHT, T-ICAHT, recovery, CAR-HEMATOTOX, EASIX, IEC-HS).

* Observations of a parameter, one value per calendar day (:func:`param_obs`, :func:`daily_values`).
* The daily series of one count with linear interpolation between measured days
  (:func:`daily_series`), as the EHA/EBMT ICAHT contract fills days between measurements.
* Durations below a threshold within a window (:func:`below_durations`): cumulative days (the
  EHA/EBMT logic restated by Rejeski et al., Blood 2025, T-ICAHT Table 1: "the cumulative length
  beneath the respective threshold is calculated", "Days of nonstable count recovery (<3 days) are
  counted to the cumulative total of days") or the longest joined run (an option).
* Per-subject windows ending at the earliest of a day and clinical events (:func:`event_windows`).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import polars as pl

from cartlab.criteria import CriteriaOptions, CriteriaTable, Rule, decision
from cartlab.criteria.model import Leaf, leaves
from cartlab.grading.censored import bounds, censored_text, interval_cmp, point  # noqa: F401 (re-exported)
from cartlab.grading.common import last_covered_day
from cartlab.io.dictionary import load_dictionary
from cartlab.model import NOT_MEASURED_SOURCES, Study
from cartlab.provenance import EVIDENCE, evidence_ref
from cartlab.units import conversion

CMP = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}

#: the ways a duration below a threshold is measured (see :func:`below_durations`)
Duration = Literal["cumulative", "longest_run"]
DURATIONS: tuple[str, ...] = Duration.__args__
#: which value of a calendar day with several is the day's value (see :func:`daily_values`)
DailyValue = Literal["min", "max", "mean", "last"]
#: an option that is a number (an int stays an int: it is shown as written)
Number = int | float


class CountWindowOptions(CriteriaOptions):
    """Operational options that N-ICAHT and T-ICAHT share (the choices the T-ICAHT paper leaves open
    follow N-ICAHT); each instrument adds its own.  ``None`` means the criteria table's default."""

    early_window: tuple[int, int] | None = None
    inclusive: bool | None = None
    daily_value: DailyValue | None = None
    interpolate: bool | None = None
    max_interpolation_gap_days: int | None = None
    range_interpolation_gap_days: int | None = None
    duration: Duration | None = None
    stable_recovery_days: int | None = None
    count_recovery_days_in_run: bool | None = None
    late_start_day: int | None = None
    late_end_day: int | None = None
    late_end_events: tuple[str, ...] | None = None
    late_end_at_last_followup: bool | None = None
    late_window_end_inclusive: bool | None = None
    late_min_measurements: int | None = None
    nontransient_length: Literal["measured", "interpolated"] | None = None


def table_levels(table: CriteriaTable, param: str) -> dict[str, float]:
    """The table's ``levels`` in ``param``'s canonical unit, keyed by the level's short name
    (``anc_500`` -> ``"500"``): the thresholds its rules name (ICAHT: ANC, T-ICAHT: PLT)."""
    return {key.split("_", 1)[1]: to_canonical(v["value"], v["unit"], param) for key, v in table.extra("levels").items()}


def grades(table: CriteriaTable, opts: dict[str, Any], sets: tuple[str, ...] = ("early", "late")) -> list[pl.Expr]:
    """``<set>_grade`` (0 when no rule holds) and ``<set>_rule`` of each rule set of ``table``: the
    first rule, in the table's order (highest grade first), whose conditions all hold."""
    return [e for s in sets for e in decision(table, s, opts, otherwise_grade=0).outcome(s, "grade", "rule")]


def early_upper_grade(grid: pl.DataFrame, day: pl.DataFrame, value: str, flags: Sequence[str],
                      features, table: CriteriaTable, opts: dict[str, Any], fills: Sequence[pl.Expr] = ()
                      ) -> pl.DataFrame:
    """The highest early grade the data leave possible (ICAHT, T-ICAHT): every day of ``grid``
    (``subject_id``, ``day``: the window to its end) without a ``value`` in ``day`` (the daily series)
    read as below every level (``flags`` True, ``value`` 0; ``fills`` for the engine's other columns),
    then graded by the table's early rules on ``features(frame)``. Returns ``subject_id``,
    ``_early_grade_max`` and ``early_unknown_days`` (missing is not negative)."""
    up = grid.join(day, on=["subject_id", "day"], how="left", maintain_order="left")
    # a censored result ("<0.5") is a known day even where its bound leaves a level open (flag null)
    unknown_day = pl.col(value).is_null() & pl.all_horizontal([pl.col(c).is_null() for c in flags])
    unknown = up.group_by("subject_id").agg(unknown_day.sum().cast(pl.Int64).alias("early_unknown_days"))
    up = up.with_columns(pl.col(value).fill_null(0.0), pl.col("evidence").fill_null(pl.lit([], dtype=EVIDENCE)),
                         *[pl.col(c).fill_null(True) for c in flags], *fills)
    worst = features(up).with_columns(grades(table, opts, ("early",)))
    return worst.select("subject_id", pl.col("early_grade").alias("_early_grade_max")).join(
        unknown, on="subject_id", how="left").with_columns(pl.col("early_unknown_days").fill_null(0))


def rule_features(rules: Sequence[Rule]) -> list[str]:
    """The features the conditions of ``rules`` compare, each once, in order."""
    found = [x.feature for r in rules for c in r.when for x in leaves(c) if isinstance(x, Leaf)]
    return list(dict.fromkeys(found))


def canonical_unit(param: str) -> tuple[str, float | None]:
    p = load_dictionary()[param]
    return p.unit, p.molar_mass_g_mol


def to_canonical(value: float, unit: str, param: str) -> float:
    """A cut-off written in ``unit`` expressed in ``param``'s canonical unit."""
    canon, mm = canonical_unit(param)
    return round(conversion(unit, canon, mm)(float(value)), 12)


def from_canonical(value: float, unit: str, param: str) -> float:
    """A canonical value of ``param`` expressed in ``unit``."""
    canon, mm = canonical_unit(param)
    return float(f"{conversion(canon, unit, mm)(float(value)):.{INTERPOLATION_SIG_DIGITS}g}")


def from_canonical_expr(expr: pl.Expr, unit: str, param: str) -> pl.Expr:
    """:func:`from_canonical` of every value of ``expr`` (the same affine map, rounded to the same 12
    significant digits as the readers' conversions: 29 mg/L is 2.9 mg/dL, not 2.9000000000000004)."""
    canon, mm = canonical_unit(param)
    conv = conversion(canon, unit, mm)
    return (conv.scale * expr + conv.offset).round_sig_figs(INTERPOLATION_SIG_DIGITS)


def fmt(x: float | None, digits: int = 4) -> str:
    if x is None:
        return "NA"
    return f"{x:.{digits}g}"


def fmt_expr(expr: pl.Expr, digits: int = 4) -> pl.Expr:
    """:func:`fmt` of every value of a numeric ``expr`` as a String expression (null stays null).

    Each distinct value is formatted once by Python's ``format`` (``"{:.4g}"``), so a reason text
    reads exactly as the scalar :func:`fmt` writes it."""

    def one(s: pl.Series) -> pl.Series:
        u = s.drop_nulls().unique()
        return s.replace_strict(u, [fmt(float(x), digits) for x in u.to_list()], default=None,
                                return_dtype=pl.String)

    return expr.map_batches(one, return_dtype=pl.String)


def py_str(expr: pl.Expr) -> pl.Expr:
    """An Int, Boolean-free or String expression as Python's ``str()`` writes it (null -> "None")."""
    return expr.cast(pl.String).fill_null(pl.lit("None"))


def subject_ids(study: Study) -> list[str]:
    """The subjects of the study (:attr:`cartlab.model.Study.subject_ids`)."""
    return study.subject_ids


def subject_order(study: Study) -> pl.DataFrame:
    """``subject_id`` and ``_order`` (its position in :func:`subject_ids`), to sort per-subject frames."""
    ids = subject_ids(study)
    return pl.DataFrame({"subject_id": ids, "_order": list(range(len(ids)))},
                        schema={"subject_id": pl.String, "_order": pl.Int64})


def censored_days(study: Study, param: str, numeric: pl.DataFrame) -> pl.DataFrame:
    """The calendar days of ``param`` with a censored result (``value_text`` "<0.1": columns
    ``censor``, ``censor_limit`` canonical) and no number (``numeric``: the days of
    :func:`daily_values`): ``subject_id``, ``d``, ``censor``, ``censor_limit``, ``_cs`` (the result
    as text, "<0.1") and ``_crs`` (its evidence). Of several on one day, the most informative: the
    lowest upper bound ("<"), else the highest lower bound (">")."""
    schema = {"subject_id": pl.String, "d": pl.Int64, "censor": pl.String, "censor_limit": pl.Float64,
              "_cs": pl.String, "_crs": pl.String}
    obs = study.observations
    if "censor" not in obs.columns or "censor_limit" not in obs.columns:
        return pl.DataFrame(schema=schema)
    c = (obs.filter((pl.col("param") == param) & pl.col("censor").is_not_null() & pl.col("censor_limit").is_not_null()
                    & pl.col("value").is_null() & pl.col("day").is_not_null())
         .with_columns(pl.col("day").floor().cast(pl.Int64).alias("d")))
    if c.is_empty():
        return pl.DataFrame(schema=schema)
    c = c.join(numeric.select("subject_id", "d").unique(), on=["subject_id", "d"], how="anti")
    upper = pl.col("censor").is_in(["<", "<="])
    c = c.with_columns(evidence_ref().alias("_crs"), pl.when(upper).then(pl.col("censor_limit"))
                       .otherwise(-pl.col("censor_limit")).alias("_k"))
    return (c.sort("_k", "day", "src_row").group_by("subject_id", "d", maintain_order=True).first()
            .select("subject_id", "d", "censor", "censor_limit",
                    censored_text(pl.col("censor"), pl.col("censor_limit")).alias("_cs"),
                    "_crs").cast(schema))


def censored_flag(op: pl.Expr, limit: pl.Expr, threshold: float, inclusive: bool) -> pl.Expr:
    """Whether a censored result ``op limit`` is at or below (``inclusive``) or below ``threshold``:
    True or False where the bound settles it, null where it does not ("<0.5" against 0.1)."""
    t = pl.lit(threshold)
    if inclusive:  # value <= t
        yes = ((op == "<") & (limit <= t)) | ((op == "<=") & (limit <= t))
        no = ((op == ">") & (limit >= t)) | ((op == ">=") & (limit > t))
    else:  # value < t
        yes = ((op == "<") & (limit <= t)) | ((op == "<=") & (limit < t))
        no = ((op == ">") & (limit >= t)) | ((op == ">=") & (limit >= t))
    return pl.when(yes).then(True).when(no).then(False).otherwise(None)


def param_obs(study: Study, params: Iterable[str], with_ref: bool = True) -> pl.DataFrame:
    """Non-null observations of ``params`` with calendar day ``d`` and evidence ``ref`` (without
    ``with_ref``: ``src_file`` instead, for :func:`cartlab.provenance.evidence_ref` of the few rows kept)."""
    # the columns first: filtering every column of a large table costs several times more
    f = (study.observations.select("subject_id", "param", "day", "value", "lln", "uln", "src_file", "src_row")
         .filter(pl.col("param").is_in(list(params)) & pl.col("value").is_not_null() & pl.col("day").is_not_null())
         .with_columns(pl.col("day").floor().cast(pl.Int64).alias("d")))
    if not with_ref:
        return f.select("subject_id", "param", "day", "d", "value", "lln", "uln", "src_file", "src_row")
    return f.with_columns(evidence_ref().alias("ref")).select(
        "subject_id", "param", "day", "d", "value", "lln", "uln", "ref", "src_row")


_DAY_KEYS = ["subject_id", "param", "d"]
#: which row of a calendar day is its value: sort keys and directions (the first row after sorting)
_DAY_ORDER = {"min": (["value", "day", "src_row"], [False, False, False]),
              "max": (["value", "day", "src_row"], [True, False, False]),
              "last": (["day", "src_row"], [True, True])}


def _day_rows(obs: pl.DataFrame, how: str, cols: list[str], keys: list[str] = _DAY_KEYS) -> pl.DataFrame:
    """``cols`` of the ``how`` row of every subject, param and calendar day (``keys``) of ``obs``."""
    if how not in _DAY_ORDER:
        raise ValueError(f"unknown daily value {how!r} (min, max, last or mean)")
    by, descending = _DAY_ORDER[how]
    return obs.sort(by, descending=descending, nulls_last=True).group_by(keys, maintain_order=True).agg(
        pl.col(cols).first())


def _one_a_day(obs: pl.DataFrame, keys: list[str] = _DAY_KEYS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the days with a single row, the rows of the days with several): the usual day needs no sort."""
    several = obs.select(keys).is_duplicated()
    return obs.filter(~several), obs.filter(several)


def daily_values(obs: pl.DataFrame, how: str, ties: Literal["range"] | None = None,
                 carry: Sequence[str] = ()) -> pl.DataFrame:
    """One value per subject, param and calendar day: the ``how`` (min | max | last | mean) one
    (min/max: on equal values the earliest row; last: the latest by time, on equal times the file's
    last row). Rows in no particular order. ``carry``: further columns of the row chosen (mean: of
    the day's first row) kept.

    ``ties="range"`` (CAR-HEMATOTOX and EASIX; session 35, review s34 M2; the other engines keep
    the file's last row): several different results at the latest time of a ``last`` day - one day,
    no time to order them - have no last value: ``value`` is null and ``refs`` empty, and ``tlo``/
    ``thi`` are the range they leave (:func:`bounds`: a censored result's open side is -inf/inf),
    ``tn`` how many different results (a result is ``value`` with ``censor``/``censor_limit`` when
    ``obs`` has them) and ``trefs`` their rows (in the order of ``obs``); all four null on a day without
    such a tie (and for min/max/mean, which use every value). The carried columns keep the file's
    last row of that time (``day``: the time of the tie)."""
    if how == "mean":
        return obs.group_by(_DAY_KEYS).agg(
            pl.col("value").mean(), pl.col("ref").drop_nulls().alias("refs"),
            pl.col("lln").first(), pl.col("uln").first(), *[pl.col(c).first() for c in carry],
        ).with_columns(_no_tie(ties))
    if how not in _DAY_ORDER:
        raise ValueError(f"unknown daily value {how!r} (min, max, last or mean)")
    single, several = _one_a_day(obs)
    cols = ["value", "ref", "lln", "uln", *carry]
    out = pl.concat([single.select(*_DAY_KEYS, *cols), _day_rows(several, how, cols)]).select(
        *_DAY_KEYS, "value", "lln", "uln",
        pl.when(pl.col("ref").is_not_null()).then(pl.concat_list(pl.col("ref")))
        .otherwise(pl.lit([], dtype=EVIDENCE)).alias("refs"), *carry)
    if ties is None or how != "last":
        return out.with_columns(_no_tie(ties))
    if ties != "range":
        raise ValueError(f"unknown ties {ties!r} (range or None)")
    # the rows of the latest time of each day holding different results: no last one (session 34)
    res = [c for c in ("value", "censor", "censor_limit") if c in several.columns]
    lo, _, hi, _ = bounds(pl.col("value"), *[pl.col(c) if c in res else pl.lit(None, dtype=t)
                                             for c, t in (("censor", pl.String), ("censor_limit", pl.Float64))])
    latest = several.filter(pl.col("day") == pl.col("day").max().over(_DAY_KEYS))
    hull = (latest.group_by(_DAY_KEYS, maintain_order=True).agg(
                lo.min().alias("tlo"), hi.max().alias("thi"), pl.struct(res).n_unique().cast(pl.Int64).alias("tn"),
                pl.col("ref").drop_nulls().alias("trefs"))
            .filter(pl.col("tn") > 1))
    tie = pl.col("tn").is_not_null()
    return out.join(hull.cast(TIE_COLUMNS), on=_DAY_KEYS, how="left").with_columns(
        pl.when(~tie).then(pl.col("value")).alias("value"),
        pl.when(tie).then(pl.lit([], dtype=EVIDENCE)).otherwise(pl.col("refs")).alias("refs"))


#: the columns ``daily_values(..., ties="range")`` adds
TIE_COLUMNS = {"tlo": pl.Float64, "thi": pl.Float64, "tn": pl.Int64, "trefs": EVIDENCE}


def _no_tie(ties: str | None) -> list[pl.Expr]:
    """The tie columns of :func:`daily_values`, null (none without ``ties``)."""
    return [] if ties is None else [pl.lit(None, dtype=t).alias(c) for c, t in TIE_COLUMNS.items()]


def daily_min_max(obs: pl.DataFrame, keys: list[str] = _DAY_KEYS, carry: tuple[str, ...] = ()) -> pl.DataFrame:
    """The lowest and the highest value per subject, param and calendar day (as :func:`daily_values`):
    ``min``, ``lln``/``uln`` (of the lowest value's row), ``min_ref``, ``max``, ``max_ref``,
    ``max_lln``/``max_uln`` (of the highest value's row: a reference range belongs to its own row,
    spec "lln, uln: reference range, in the row's unit").

    ``keys``: the columns that name a subject, param and day (one integer key is the fastest);
    ``carry``: further columns, equal within a key, kept."""
    single, several = _one_a_day(obs, keys)
    lo = _day_rows(several, "min", ["value", "lln", "uln", "ref", *carry], keys).rename({"value": "min", "ref": "min_ref"})
    hi = _day_rows(several, "max", ["value", "ref", "lln", "uln"], keys).rename(
        {"value": "max", "ref": "max_ref", "lln": "max_lln", "uln": "max_uln"})
    return pl.concat([
        single.select(*keys, pl.col("value").alias("min"), "lln", "uln", pl.col("ref").alias("min_ref"), *carry,
                      pl.col("value").alias("max"), pl.col("ref").alias("max_ref"),
                      pl.col("lln").alias("max_lln"), pl.col("uln").alias("max_uln")),
        lo.join(hi, on=keys, how="left"),
    ])


def join_param(frame: pl.DataFrame, values: pl.DataFrame, keys: list[str], param: str,
               cols: dict[str, str]) -> pl.DataFrame:
    """``frame`` with the ``values`` rows of one ``param`` joined on ``keys`` (``cols``: column -> new name)."""
    part = values.filter(pl.col("param") == param).select(*keys, *[pl.col(c).alias(n) for c, n in cols.items()])
    return frame.join(part, on=keys, how="left", maintain_order="left")


_SEP = "\x1f"  # joins the texts of a list built as one string (never part of an id, reference or reason)


def joined(items: Iterable[tuple[pl.Expr, str | pl.Expr]], sep: str) -> pl.Expr:
    """The texts whose condition holds, in order, joined by ``sep`` ("" when none holds; a null
    text is left out)."""
    parts = [pl.when(cond).then(pl.lit(t) if isinstance(t, str) else t) for cond, t in items]
    if not parts:
        return pl.lit("")
    return pl.concat_str(parts, separator=sep, ignore_nulls=True)


def str_list(items: Iterable[tuple[pl.Expr, str | pl.Expr]]) -> pl.Expr:
    """The texts whose condition holds, in order, as a list of strings (empty when none holds; a
    null text is left out). Texts must not be empty. Built as one string and split: far faster
    than ``pl.concat_list`` on large frames."""
    s = joined(items, _SEP)
    return pl.when(s == "").then(pl.lit([], dtype=pl.List(pl.String))).otherwise(s.str.split(_SEP))


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)


def transfusion_days(study: Study, categories: Iterable[str]) -> pl.DataFrame:
    """One row per subject and calendar day covered by an intervention of ``categories``
    (``start_day`` to ``end_day`` inclusive; no end = the start day; an end at exactly 00:00 covers up
    to the day before: :func:`cartlab.grading.common.last_covered_day`), with its evidence ``ref``."""
    iv = study.interventions.filter(pl.col("category").is_in(list(categories)) & pl.col("start_day").is_not_null())
    lo = pl.col("start_day").floor().cast(pl.Int64)
    hi = last_covered_day(iv)
    return (
        iv.with_columns(pl.int_ranges(lo, pl.max_horizontal(lo, hi) + 1).alias("d"), evidence_ref().alias("ref"))
        .explode("d").select("subject_id", "d", "ref")
    )


# ---------------------------------------------------------------------------------------------
# the daily series of one count

#: Interpolated counts are rounded to this many significant digits (the readers round converted
#: values the same way): far below any count's precision, and free of binary float artefacts.
INTERPOLATION_SIG_DIGITS = 12


def recorded_day(col: str = "source") -> pl.Expr:
    """A day of :func:`daily_series` with a value recorded that day (``source`` measured, or the
    not-measured word of its rows: simulated, synthetic, reconstructed), not interpolated or missing."""
    return ~pl.col(col).is_in(["interpolated", "missing"]) & pl.col(col).is_not_null()


def _not_measured_days(study: Study, param: str) -> pl.DataFrame:
    """(subject_id, d, _prov): the calendar days whose every value of ``param`` has a not-measured
    source (:data:`cartlab.model.NOT_MEASURED_SOURCES`), with that word (the first in that order)."""
    schema = {"subject_id": pl.String, "d": pl.Int64, "_prov": pl.String}
    obs = study.observations
    if "source" not in obs.columns:
        return pl.DataFrame(schema=schema)
    src = pl.col("source").cast(pl.String).str.strip_chars().str.to_lowercase()
    rank = {w: i for i, w in enumerate(NOT_MEASURED_SOURCES)}
    days = (obs.filter((pl.col("param") == param) & (pl.col("value").is_not_null() | pl.col("censor").is_not_null())
                       & pl.col("day").is_not_null())  # a censored "<0.05" is a recorded value too (review35 B5)
            .select("subject_id", pl.col("day").floor().cast(pl.Int64).alias("d"),
                    src.replace_strict(rank, default=None, return_dtype=pl.Int64).alias("_r"))
            .group_by("subject_id", "d").agg(pl.col("_r").is_not_null().all().alias("_all"), pl.col("_r").min()))
    words = {i: w for w, i in rank.items()}
    return days.filter(pl.col("_all")).select(
        "subject_id", "d", pl.col("_r").replace_strict(words, return_dtype=pl.String).alias("_prov")).cast(schema)


def daily_series(study: Study, param: str, opts: dict[str, Any], label: str) -> pl.DataFrame:
    """One row per subject and calendar day from its first to its last measured day of ``param``.

    ``value`` is the day's ``opts["daily_value"]`` (min | max | mean | last) or, when
    ``opts["interpolate"]``, the linear interpolation of the neighbouring measured days (not across
    more than ``opts["max_interpolation_gap_days"]`` missing days when set); otherwise missing.
    Columns: ``subject_id``, ``day``, ``value``, ``source`` (measured | interpolated | missing; a
    recorded day whose every row is simulated, synthetic or reconstructed has that word instead of
    measured: :func:`recorded_day`),
    ``prev_day``/``next_day`` (interpolation neighbours), ``reason``, ``evidence``; rows in subject
    and day order.
    """
    schema = {"subject_id": pl.String, "day": pl.Int64, "value": pl.Float64, "source": pl.String,
              "prev_day": pl.Int64, "next_day": pl.Int64, "reason": pl.String, "evidence": EVIDENCE,
              "censor": pl.String, "censor_limit": pl.Float64}
    obs = daily_values(param_obs(study, [param]), opts["daily_value"])
    cens = censored_days(study, param, obs)
    if obs.is_empty() and cens.is_empty():
        return empty(schema)
    # the grid in subject and day order (sorting the small per-subject frame, not the grid)
    days = pl.concat([obs.select("subject_id", "d"), cens.select("subject_id", "d")])
    grid = (
        days.group_by("subject_id").agg(pl.col("d").min().alias("lo"), pl.col("d").max().alias("hi"))
        .sort("subject_id").with_columns(pl.int_ranges("lo", pl.col("hi") + 1).alias("d")).explode("d")
        .select("subject_id", "d")
    )
    # a measured day's number and references as strings, formatted and joined once: the days around
    # it repeat them (formatting floats and building lists are most of the cost of this table)
    obs = obs.select("subject_id", "d", "value", pl.col("value").cast(pl.String).alias("_vs"),
                     pl.col("refs").list.join(_SEP).alias("_rs"))
    f = (grid.join(obs, on=["subject_id", "d"], how="left", maintain_order="left")
         .join(cens, on=["subject_id", "d"], how="left", maintain_order="left"))
    # a censored result ("<0.1") is a measurement whose number is unknown: it ends an interpolation
    # (NaN carried to the neighbours: no number is made up from it) and gets no value of its own
    censored = pl.col("censor").is_not_null()
    f = f.with_columns(pl.when(pl.col("value").is_not_null() | censored).then(pl.col("d")).alias("_md"),
                       pl.when(censored).then(float("nan")).otherwise(pl.col("value")).alias("_v"),
                       pl.when(censored).then(pl.col("_cs")).otherwise(pl.col("_vs")).alias("_vs"),
                       pl.when(censored).then(pl.col("_crs")).otherwise(pl.col("_rs")).alias("_rs"))
    f = f.with_columns(
        *[pl.col(c).forward_fill().over("subject_id").alias(f"prev_{n}") for c, n in
          (("_md", "day"), ("_v", "v"), ("_vs", "vs"), ("_rs", "rs"))],
        *[pl.col(c).backward_fill().over("subject_id").alias(f"next_{n}") for c, n in
          (("_md", "day"), ("_v", "v"), ("_vs", "vs"), ("_rs", "rs"))],
    )
    next_to_censored = pl.col("prev_v").is_nan() | pl.col("next_v").is_nan()
    gap_ok = pl.lit(bool(opts["interpolate"]))
    if opts["max_interpolation_gap_days"] is not None:
        gap_ok = gap_ok & ((pl.col("next_day") - pl.col("prev_day") - 1) <= int(opts["max_interpolation_gap_days"]))
    # rounded like the readers' unit conversions (12 significant digits): 1.3 - 1.2 * 2/3 is
    # 0.5000000000000001 in binary floating point, which must still count as "<= 0.5"
    interp = (pl.col("prev_v") + (pl.col("next_v") - pl.col("prev_v")) * (
        (pl.col("d") - pl.col("prev_day")) / (pl.col("next_day") - pl.col("prev_day"))
    )).round_sig_figs(INTERPOLATION_SIG_DIGITS)
    measured = pl.col("value").is_not_null() | censored
    gap_ok = gap_ok & ~next_to_censored.fill_null(False)
    # a day whose every value of the param is not measured (simulated, synthetic, reconstructed) says
    # so: `source` is that word, not "measured" (a recorded value either way: recorded_day())
    f = f.join(_not_measured_days(study, param), on=["subject_id", "d"], how="left", maintain_order="left")
    f = f.with_columns(
        pl.when(measured).then(pl.col("value")).when(gap_ok).then(interp).alias("value"),
        pl.when(measured).then(pl.coalesce(pl.col("_prov"), pl.lit("measured"))).when(gap_ok)
        .then(pl.lit("interpolated")).otherwise(pl.lit("missing")).alias("source"),
    )
    is_m, is_i = recorded_day(), pl.col("source") == "interpolated"
    refs = pl.concat_str([pl.when(rows & (pl.col(c) != "")).then(pl.col(c)) for rows, c in
                          ((is_m, "_rs"), (is_i, "prev_rs"), (is_i, "next_rs"))], separator=_SEP, ignore_nulls=True)
    f = f.with_columns(
        pl.when(is_m).then(pl.concat_str(pl.col("source"), pl.lit(f" {label} "), pl.col("_vs")))
        .when(is_i).then(pl.concat_str(
            pl.lit("interpolated "), pl.col("value").round(3).cast(pl.String), pl.lit(" between day "),
            pl.col("prev_day").cast(pl.String), pl.lit(" ("), pl.col("prev_vs"), pl.lit(") and day "),
            pl.col("next_day").cast(pl.String), pl.lit(" ("), pl.col("next_vs"), pl.lit(")")))
        .when(next_to_censored.fill_null(False)).then(pl.format(
            f"no {label}: between day {{}} ({{}}) and day {{}} ({{}}), a censored result is not interpolated",
            pl.col("prev_day"), pl.col("prev_vs"), pl.col("next_day"), pl.col("next_vs")))
        .otherwise(pl.format(f"no {label}: gap between day {{}} and day {{}} too long to interpolate",
                             pl.col("prev_day"), pl.col("next_day"))).alias("reason"),
        pl.when(refs == "").then(pl.lit([], dtype=EVIDENCE)).otherwise(refs.str.split(_SEP)).alias("evidence"),
        # is_m, not `measured`: "value" now holds the interpolated values too
        pl.when(is_m).then(None).otherwise(pl.col("prev_day")).alias("prev_day"),
        pl.when(is_m).then(None).otherwise(pl.col("next_day")).alias("next_day"),
    )
    return f.rename({"d": "day"}).select(list(schema)).cast(schema)


# ---------------------------------------------------------------------------------------------
# durations below a threshold


def below_durations(frame: pl.DataFrame, flag: str, stable: int, count_gap: bool, how: str) -> pl.DataFrame:
    """Days below a threshold per subject, from the window days of ``frame`` (``subject_id``, ``day``
    and the nullable boolean column ``flag``: True = below, False = not below, null = unknown).

    Consecutive below-days form runs; a run of not-below days shorter than ``stable`` days between
    two below-runs (every day known) is a non-stable recovery: it joins them into one episode and its
    days count when ``count_gap``. Unknown days are never counted and never bridged.

    ``how``: ``"cumulative"`` = all below-days (plus counted recovery days) of the window, from the
    first to the last below-day; ``"longest_run"`` = the longest joined episode (ties: the earliest).
    Returns one row per subject with at least one known day: ``days`` (0 when none below),
    ``start``, ``end``, ``episodes`` (joined episodes in the window), ``recovery_days`` (non-stable
    recovery days counted) and ``joined`` (a counted episode spans a non-stable recovery).
    """
    if how not in DURATIONS:
        raise ValueError(f"unknown duration {how!r} ({' or '.join(DURATIONS)})")
    sid = "subject_id"
    f = frame.select(sid, "day", pl.col(flag).alias("flag")).sort(sid, "day")
    state = pl.when(pl.col("flag").is_null()).then(-1).when(pl.col("flag")).then(1).otherwise(0)
    f = f.with_columns(state.alias("state"))
    new_run = (pl.col("state") != pl.col("state").shift(1).over(sid)) | (
        pl.col("day") != pl.col("day").shift(1).over(sid) + 1)
    f = f.with_columns(new_run.fill_null(True).cast(pl.Int64).cum_sum().over(sid).alias("run"))
    runs = f.group_by(sid, "run", maintain_order=True).agg(
        pl.col("state").first(), pl.len().alias("n"), pl.col("day").min().alias("first"),
        pl.col("day").max().alias("last"),
    ).sort(sid, "run")
    prev_adj = (pl.col("last").shift(1).over(sid) == pl.col("first") - 1)
    next_adj = (pl.col("first").shift(-1).over(sid) == pl.col("last") + 1)
    bridged = ((pl.col("state") == 0) & (pl.col("state").shift(1).over(sid) == 1) & prev_adj
               & (pl.col("state").shift(-1).over(sid) == 1) & next_adj & (pl.col("n") < int(stable)))
    runs = runs.with_columns(bridged.fill_null(False).alias("bridged"))
    runs = runs.with_columns(
        ((pl.col("state") == 1) & ~pl.col("bridged").shift(1).over(sid).fill_null(False))
        .cast(pl.Int64).cum_sum().over(sid).alias("episode"),
    )
    counted = runs.filter((pl.col("state") == 1) | pl.col("bridged"))
    gap_n = pl.when(pl.col("bridged")).then(pl.col("n")).otherwise(0)
    episodes = counted.group_by(sid, "episode", maintain_order=True).agg(
        (pl.when(pl.col("state") == 1).then(pl.col("n")).otherwise(0).sum()
         + (gap_n.sum() if count_gap else pl.lit(0))).alias("days"),
        pl.col("first").min().alias("start"), pl.col("last").filter(pl.col("state") == 1).max().alias("end"),
        (gap_n.sum() if count_gap else pl.lit(0)).alias("recovery_days"),
        pl.col("bridged").any().alias("joined"),
    )
    if how == "cumulative":
        per = episodes.group_by(sid).agg(
            pl.col("days").sum(), pl.col("start").min(), pl.col("end").max(), pl.len().alias("episodes"),
            pl.col("recovery_days").sum(), pl.col("joined").any(),
        )
    else:
        per = episodes.sort(sid, pl.col("days"), pl.col("start"), descending=[False, True, False]).group_by(
            sid, maintain_order=True).agg(
            pl.col("days").first(), pl.col("start").first(), pl.col("end").first(),
            pl.len().alias("episodes"), pl.col("recovery_days").first(), pl.col("joined").first(),
        )
    known = f.filter(pl.col("state") >= 0).select(sid).unique()
    schema = {sid: pl.String, "days": pl.Int64, "start": pl.Int64, "end": pl.Int64, "episodes": pl.Int64,
              "recovery_days": pl.Int64, "joined": pl.Boolean}
    out = known.join(per, on=sid, how="left").with_columns(
        pl.col("days").fill_null(0), pl.col("episodes").fill_null(0), pl.col("recovery_days").fill_null(0),
        pl.col("joined").fill_null(False),
    )
    return out.select(list(schema)).cast(schema)


def nontransient_runs(frame: pl.DataFrame, sids: list[str], opts: dict[str, Any], levels: Iterable[str],
                      flag: str, out: str) -> pl.DataFrame:
    """``<out><level>`` (1/0) per subject of ``sids``: the late "Two or more laboratory tests **or
    nontransient** thrombocytopenia/neutropenia" (Rejeski 2025, T-ICAHT Table 1 footnote; option
    ``late_nontransient``, all 0 when off), and ``_<out><level>_days``, the first such run as text
    ("40-60 (measured at or below on days 40, 60; days between interpolated)"). ``frame``: the daily
    series with ``window`` (early | late), ``source`` and the flags ``<flag><level>``. A run is
    consecutive calendar days of the early and late windows at or below the level (a day without a
    count, or open, ends it), cut (option ``nontransient_length=measured``, the default; session 40,
    review s40 A2) to its first and last *recorded* count at or below the level: interpolation never
    carries a run past its last low count toward a normal one, the days between two low counts stay
    in it. It is nontransient when it (so cut) reaches the late window and either holds a recorded
    early count at or below the level (it continues from the early window) or lasts >=
    ``stable_recovery_days`` days (cartlab's reading, rules ``t_icaht.late.*_nontransient``,
    ``icaht.late.*_nontransient``): a single low count followed by a normal one is one test, however
    late the next count. ``interpolated`` (cartlab 0.x): the run runs to its last interpolated day."""
    cols = [f"{out}{n}" for n in levels]
    res = pl.DataFrame({"subject_id": sids}, schema={"subject_id": pl.String})
    if not opts.get("late_nontransient"):
        return res.with_columns(*[pl.lit(0, dtype=pl.Int64).alias(c) for c in cols],
                                *[pl.lit(None, dtype=pl.String).alias(f"_{c}_days") for c in cols])
    measured = opts.get("nontransient_length", "measured") == "measured"
    f = frame.filter(pl.col("window").is_in(["early", "late"])).sort("subject_id", "day")
    gap = (pl.col("day") - pl.col("day").shift(1).over("subject_id")) != 1
    rec = recorded_day()
    for n, c in zip(levels, cols):
        below = pl.col(f"{flag}{n}").fill_null(False)
        new_run = (gap | (below != below.shift(1).over("subject_id"))).fill_null(True)
        first, last = pl.col("day").filter(rec).min(), pl.col("day").filter(rec).max()
        inside = pl.col("day").is_between(first, last) if measured else pl.col("day") >= first
        runs = (f.with_columns(new_run.cum_sum().over("subject_id").alias("_run"), below.alias("_below"))
                .filter("_below").group_by("subject_id", "_run").agg(
                    ((pl.col("window") == "late") & inside).any().alias("_late"),
                    ((pl.col("window") == "early") & rec).any().alias("_from_early"),
                    first.alias("_a"), (last if measured else pl.col("day").max()).alias("_b"),
                    pl.col("day").filter(rec).alias("_rec"))
                .with_columns((pl.col("_b") - pl.col("_a") + 1).alias("_len")))
        hit = (runs.filter(pl.col("_late") & (pl.col("_from_early")
                                              | (pl.col("_len").fill_null(0) >= int(opts["stable_recovery_days"]))))
               .sort("subject_id", "_a").group_by("subject_id", maintain_order=True).first())
        rec_txt = pl.col("_rec").list.eval(pl.element().cast(pl.String)).list.join(", ")
        where = "at or below" if opts.get("inclusive", True) else "below"
        every = pl.col("_rec").list.len() >= pl.col("_len")
        txt = pl.format(f"days {{}}-{{}} (recorded count {where} the level {{}})", pl.col("_a"), pl.col("_b"),
                        pl.when(every).then(pl.lit("on every day")).otherwise(pl.concat_str(
                            pl.lit("on days "), rec_txt, pl.lit("; the days between interpolated"))))
        res = res.join(hit.select("subject_id", pl.lit(1, dtype=pl.Int64).alias(c), txt.alias(f"_{c}_days")),
                       on="subject_id", how="left", maintain_order="left").with_columns(pl.col(c).fill_null(0))
    return res


def day_ranges(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    """``subject_id`` and ``name``: the days of ``frame`` (``subject_id``, ``day``) as text, runs of
    consecutive days joined ("0, 2-30"); subjects without a row are absent."""
    f = frame.select("subject_id", "day").unique().sort("subject_id", "day")
    f = f.with_columns(((pl.col("day") - pl.col("day").shift(1).over("subject_id")) != 1).fill_null(True)
                       .cum_sum().over("subject_id").alias("_r"))
    runs = f.group_by("subject_id", "_r", maintain_order=True).agg(pl.col("day").min().alias("a"),
                                                                  pl.col("day").max().alias("b"))
    txt = pl.when(pl.col("a") == pl.col("b")).then(pl.col("a").cast(pl.String)).otherwise(
        pl.format("{}-{}", pl.col("a"), pl.col("b")))
    return runs.group_by("subject_id", maintain_order=True).agg(txt.str.join(", ").alias(name))


# ---------------------------------------------------------------------------------------------
# windows ending at clinical events


#: what in doses.csv ends a window as a new therapy does (options ``icaht.late_end_doses``,
#: ``t_icaht.censor_doses``, ``count_recovery.censor_doses``; session 45, review 45 F2)
EndDoses = Literal["reinfusion_or_lymphodepletion", "none"]


def dose_ends(study: Study, mode: str | None, gap_days: float | None = None) -> pl.DataFrame:
    """The doses.csv rows that start a new CAR-T course, as a ``new_therapy`` event would end a window
    (the spec's late window ends at "relapse, new therapy, HSCT or last follow-up"; Rejeski 2025, T-ICAHT
    Table 1 footnote: "censoring at the time of ... subsequent line of therapy"): with ``mode``
    ``reinfusion_or_lymphodepletion``, every CAR-T re-infusion (a CAR-T dose more than ``gap_days`` - the
    analysis's ``kinetics.split_dose_gap_days``, None its default, 7 - after the previous one:
    :func:`cartlab.response.infusion_evidence.reinfusions`) and every dose of a lymphodepletion agent of
    ``ld_agents.yaml`` on or after day 1 (a further lymphodepletion course). ``subject_id``, ``day``
    (Float64), ``event`` (reinfusion | lymphodepletion), ``why`` ("new CAR-T course (re-infusion,
    doses.csv:7)", "new CAR-T course (lymphodepletion: fludarabine, doses.csv:5)") and ``ref``; no row with
    ``none``."""
    schema = {"subject_id": pl.String, "day": pl.Float64, "event": pl.String, "why": pl.String, "ref": pl.String}
    if mode in (None, "none") or study.doses.height == 0:
        return pl.DataFrame(schema=schema)
    if mode != "reinfusion_or_lymphodepletion":
        raise ValueError(f"unknown dose censoring {mode!r} (reinfusion_or_lymphodepletion or none)")
    from cartlab.grading.ld_agents import canonical_agent_expr, known_agents
    from cartlab.response.infusion_evidence import reinfusions

    re = [(sid, float(day), "reinfusion", ref) for sid, rows in reinfusions(study, gap_days).items() for day, ref in rows]
    reinf = pl.DataFrame(re, schema=[("subject_id", pl.String), ("day", pl.Float64), ("event", pl.String),
                                     ("ref", pl.String)], orient="row")
    d = study.doses.filter(pl.col("day").is_not_null() & (pl.col("day") >= 1)).with_columns(
        canonical_agent_expr(pl.col("agent")).alias("_agent"))
    ld = d.filter(pl.col("_agent").is_in(list(known_agents()))).select(
        "subject_id", pl.col("day").cast(pl.Float64), pl.lit("lymphodepletion").alias("event"),
        evidence_ref().alias("ref"), "_agent")
    why_ref = pl.when(pl.col("ref").is_not_null()).then(pl.format(", {}", pl.col("ref"))).otherwise(pl.lit(""))
    return pl.concat([
        reinf.select("subject_id", "day", "event", pl.concat_str(pl.lit("new CAR-T course (re-infusion"), why_ref,
                                                                 pl.lit(")")).alias("why"), "ref"),
        ld.select("subject_id", "day", "event", pl.concat_str(pl.lit("new CAR-T course (lymphodepletion: "),
                                                              pl.col("_agent"), why_ref, pl.lit(")")).alias("why"), "ref"),
    ]).sort("subject_id", "day").select(list(schema)).cast(schema)


def event_windows(study: Study, sids: list[str], start: float, end_day: float, events: Iterable[str],
                  at_last_followup: bool, min_event_day: float | None = None,
                  doses: pl.DataFrame | None = None) -> pl.DataFrame:
    """One row per subject of ``sids`` (in that order): ``start``, ``end`` (the earliest of
    ``end_day``, the first of ``events`` - only those on or after ``min_event_day`` when given -, the
    first of ``doses`` (:func:`dose_ends`: a re-infusion or a further lymphodepletion, as a new therapy)
    and, when ``at_last_followup``, the last follow-up day), ``why`` (what ends it, ", "-joined when
    several do) and ``evidence`` (the rows of the ending events and doses)."""
    sid = "subject_id"
    ev = study.events.filter(pl.col("event").is_in(list(events)) & pl.col("day").is_not_null())
    if min_event_day is not None:
        ev = ev.filter(pl.col("day") >= float(min_event_day))
    ev = ev.with_columns(evidence_ref().alias("ref")).sort("day")
    subjects = pl.DataFrame({sid: sids, "_order": range(len(sids))}, schema={sid: pl.String, "_order": pl.Int64})
    ends = [
        subjects.select(sid, pl.lit(float(end_day)).alias("day"), pl.lit(f"day {end_day:g}").alias("why"),
                        pl.lit(None, dtype=pl.String).alias("ref"), pl.lit(0).alias("_k")),
        ev.select(sid, pl.col("day").cast(pl.Float64), pl.col("event").cast(pl.String).alias("why"), "ref",
                  pl.lit(1).alias("_k")),
    ]
    if doses is not None and doses.height:
        ends.append(doses.select(sid, pl.col("day").cast(pl.Float64), "why", "ref", pl.lit(1).alias("_k")))
    if at_last_followup and study.subjects.height:
        lfu = study.subjects.unique(sid, keep="last", maintain_order=True).filter(
            pl.col("last_followup_day").is_not_null())
        ends.append(lfu.select(sid, pl.col("last_followup_day").cast(pl.Float64).alias("day"),
                               pl.lit("last follow-up").alias("why"), pl.lit(None, dtype=pl.String).alias("ref"),
                               pl.lit(2).alias("_k")))
    first = (pl.concat([e.with_row_index("_i") for e in ends]).join(subjects, on=sid, how="inner")
             .sort("_order", "_k", "_i").filter(pl.col("day") == pl.col("day").min().over(sid))
             .group_by(sid, maintain_order=True).agg(
                 pl.col("day").first().alias("end"), pl.col("why").str.join(", "),
                 pl.col("ref").drop_nulls().unique(maintain_order=True).alias("evidence")))
    return subjects.join(first, on=sid, how="left").sort("_order").select(
        sid, pl.lit(float(start)).alias("start"), "end", "why", pl.col("evidence").cast(EVIDENCE))


def windows_frame(wins: pl.DataFrame) -> pl.DataFrame:
    """``subject_id``, ``_ws``, ``_we`` (window start and end) of :func:`event_windows`."""
    return wins.select("subject_id", pl.col("start").alias("_ws"), pl.col("end").alias("_we"))


def in_window(end_inclusive: bool) -> pl.Expr:
    """``day`` within ``[_ws, _we]`` (``[_ws, _we)`` when not ``end_inclusive``)."""
    upper = (pl.col("day") <= pl.col("_we")) if end_inclusive else (pl.col("day") < pl.col("_we"))
    return (pl.col("day") >= pl.col("_ws")) & upper


# ---------------------------------------------------------------------------------------------
# censored results as bounds (session 32)


def param_obs_censored(study: Study, params: Iterable[str]) -> pl.DataFrame:
    """:func:`param_obs` (``with_ref=False``) plus the censored rows of ``params`` (``value`` null,
    ``censor`` in <, <=, >, >= and ``censor_limit`` canonical; spec ``value_text`` "<50"), with
    ``censor``/``censor_limit`` null on numeric rows: a censored result is a measurement whose
    number is unknown, never a missing one (missing is not negative)."""
    obs = study.observations
    cols = ["subject_id", "param", "day", "value", "lln", "uln", "src_file", "src_row"]
    has = "censor" in obs.columns and "censor_limit" in obs.columns
    cens = (pl.col("censor").cast(pl.String), pl.col("censor_limit").cast(pl.Float64)) if has else (
        pl.lit(None, dtype=pl.String), pl.lit(None, dtype=pl.Float64))
    f = obs.select(*cols, cens[0].alias("censor"), cens[1].alias("censor_limit"))
    is_c = pl.col("value").is_null() & pl.col("censor").is_in(["<", "<=", ">", ">="]) & pl.col("censor_limit").is_not_null()
    f = (f.filter(pl.col("param").is_in(list(params)) & pl.col("day").is_not_null() & (pl.col("value").is_not_null() | is_c))
         .with_columns(pl.col("day").floor().cast(pl.Int64).alias("d"),
                       pl.when(pl.col("value").is_null()).then(pl.col("censor")).alias("censor"),
                       pl.when(pl.col("value").is_null()).then(pl.col("censor_limit")).alias("censor_limit")))
    return f.select("subject_id", "param", "day", "d", "value", "censor", "censor_limit", "lln", "uln", "src_file", "src_row")


def unique_refs_expr(*parts: pl.Expr) -> pl.Expr:
    """The non-null references of ``parts`` (String or non-null list expressions) in first-seen
    order, each once (:func:`cartlab.provenance.unique_refs` as an expression)."""
    if not parts:
        return pl.lit([], dtype=EVIDENCE)
    return pl.concat_list(list(parts)).list.drop_nulls().list.unique(maintain_order=True)


def nadir_key(value: str, censored: str) -> pl.Expr:
    """The order of a window's counts for its nadir: the number ``value``, else the bound of the
    censored text ``censored`` (``"<0.5"`` is ordered as 0.5: a censored result is no nadir number,
    session 32); null when neither is given."""
    return pl.coalesce(pl.col(value), pl.col(censored).str.replace(r"^[<>]=?", "").cast(pl.Float64, strict=False))


def nadir_exprs(value: str, censored: str, name: str) -> list[pl.Expr]:
    """Aggregations over one subject's measurements sorted by :func:`nadir_key` (then day): the lowest
    (``<name>_nadir``, ``<name>_nadir_day``) and second lowest (``<name>_confirmed``, ``..._day``: the
    worst level reached by two measurements) ``value`` and day, and their censored texts
    (``_<name>_nadir_cs``, ``_<name>_confirmed_cs``); null where there is no such measurement."""
    return [pl.col(value).first().alias(f"{name}_nadir"), pl.col("day").first().alias(f"{name}_nadir_day"),
            pl.col(value).get(1, null_on_oob=True).alias(f"{name}_confirmed"),
            pl.col("day").get(1, null_on_oob=True).alias(f"{name}_confirmed_day"),
            pl.col(censored).first().alias(f"_{name}_nadir_cs"),
            pl.col(censored).get(1, null_on_oob=True).alias(f"_{name}_confirmed_cs")]
