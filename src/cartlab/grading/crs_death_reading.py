"""How the ASTCT CRS engine reads a death with no attribution recorded that counts toward CRS (option
``unattributed_death_reading``; convention crs.conv.unattributed_death; review 41 F1).

ASTCT 2019 grade 5 is death due to CRS (or ICANS) when no other cause is the principal factor. An
empty attribution does not say which: the CRS engine reads such a death inside a CRS episode as grade
5 ('grade5', its default since session 29); 'range' keeps the day's grade without the death and opens
it up to 5 (grade_max, missing_inputs 'death attribution'), the ICANS engine's default reading
(icans.unattributed_death_reading). Both engines accept both values.
"""

from __future__ import annotations

from typing import Any, Literal

import polars as pl

__all__ = ["READINGS", "read_unattributed", "death_open", "death_episode", "name_attached_death", "INSIDE_TEXT"]

READINGS = ("grade5", "range")

#: the reason of a day whose unattributed death the 'range' reading leaves open inside CRS
INSIDE_TEXT = ("death with no attribution recorded, during CRS: up to 5 if due to CRS (option "
               "unattributed_death_reading=range; 'grade5' counts it as a CRS death)")


Reading = Literal["grade5", "range"]


def read_unattributed(f: pl.DataFrame, opts: dict[str, Any]) -> pl.DataFrame:
    """``death_open_inside``: with 'range', the unattributed deaths still counted as CRS deaths
    (``crs_death``) are not (a range up to 5 instead); False everywhere with 'grade5'."""
    if opts.get("unattributed_death_reading", "grade5") != "range":
        return f.with_columns(pl.lit(False).alias("death_open_inside"))
    unattributed = pl.col("crs_death") & ~pl.col("death_attribution_recorded").fill_null(True)
    return f.with_columns(unattributed.fill_null(False).alias("death_open_inside"),
                          pl.when(unattributed).then(False).otherwise(pl.col("crs_death")).alias("crs_death"))


def death_open() -> pl.Expr:
    """A day an unattributed death leaves open up to 5: outside a CRS episode, or inside one read as a range."""
    return pl.col("death_outside_crs") | pl.col("death_open_inside")


def death_episode(daily: pl.DataFrame) -> pl.DataFrame:
    """``death_episode``: on a day whose unattributed death the 'range' reading leaves open inside CRS
    (``death_open_inside``, dropped here) the CRS episode it belongs to (the day's own, or the last one
    before it: the death is within episode_join_gap_days + 1 days of a CRS day), so that ADAE's ATOXGRUP
    reaches it, as icans_daily's (review 41 F1); null elsewhere."""
    if "death_open_inside" not in daily.columns:
        return daily.with_columns(pl.lit(None, pl.Int64).alias("death_episode"))
    order = daily.with_row_index("_o").sort("subject_id", "day")
    last = pl.col("episode").forward_fill().over("subject_id")
    return (order.with_columns(pl.when(pl.col("death_open_inside").fill_null(False))
                               .then(pl.coalesce(pl.col("episode"), last)).cast(pl.Int64).alias("death_episode"))
            .sort("_o").drop("_o", "death_open_inside"))


def name_attached_death(eps: pl.DataFrame, daily: pl.DataFrame, convention: str) -> pl.DataFrame:
    """ADAE-like episodes (``subject_id``, ``episode``, ``reason``) whose episode an unattributed death
    is attached to (``daily``'s ``death_episode``: the 'range' reading) with the death named in front of
    the reason: "up to 5: death with no attribution recorded on day D, during this episode (missing
    input: death attribution; convention ...)". In front because ADAE REASON keeps its first 200
    characters. CRS and ICANS alike (review 41 F1; session 42 for CRS)."""
    if "death_episode" not in daily.columns or eps.height == 0 or "episode" not in eps.columns:
        return eps
    deaths = (daily.filter(pl.col("death_episode").is_not_null())
              .group_by("subject_id", pl.col("death_episode").alias("episode")).agg(pl.col("day").max().alias("_dd")))
    if deaths.height == 0:
        return eps
    return (eps.join(deaths, on=["subject_id", "episode"], how="left", maintain_order="left")
            .with_columns(pl.when(pl.col("_dd").is_not_null()).then(pl.format(
                "up to 5: death with no attribution recorded on day {}, during this episode (missing input: death "
                f"attribution; convention {convention}); {{}}", pl.col("_dd").cast(pl.Int64),
                pl.col("reason"))).otherwise(pl.col("reason")).alias("reason"))
            .drop("_dd"))
