"""The protocol's own response endpoint: ORR by the trial's definition at its landmarks.

``protocol_orr(study, protocol)`` runs the best-response engine with the protocol's ORR categories
(e.g. NCT04762485: CR + CRi + MLFS + PR) once per landmark day (assessments up to that day) and
once without a landmark, and gives the rate with its exact Clopper-Pearson CI
(:func:`cartlab.response.endpoints.response_rate`). The protocol's ``category_map`` (NCT04762485:
CRh counts as CRi, as the registry's CRi definition includes it) is applied before counting:
``protocol_category`` is the best response in the protocol's terms, ``orr_definition`` names it.
"""

from __future__ import annotations

import polars as pl

__all__ = ["derive_protocol_best_response", "protocol_orr", "protocol_orr_from"]


def protocol_orr(study, protocol) -> pl.DataFrame:
    """ORR by ``protocol.response`` (empty frame when the protocol has no response plan)."""
    return protocol_orr_from(derive_protocol_best_response(study, protocol), protocol)


def derive_protocol_best_response(study, protocol, options=None, split_dose_gap_days: float | None = None
                                  ) -> pl.DataFrame:
    """Best response per subject with the protocol's ORR categories, once per landmark day
    (column ``landmark_day``; null = no landmark). Per subject, so a large study can be run in batches.
    ``options``: the analysis's :class:`~cartlab.response.best.BestResponseOptions` (None: the defaults),
    whose ``orr_categories`` and ``landmark_day`` the protocol's replace; ``split_dose_gap_days``: the
    analysis's ``kinetics.split_dose_gap_days`` (what makes a later CAR-T dose a re-infusion)."""
    from dataclasses import replace

    from cartlab.response.best import BestResponseOptions, derive_best_response

    if protocol.response is None:
        return pl.DataFrame({"landmark_day": []}, schema={"landmark_day": pl.Float64})
    plan = protocol.response
    cats = plan.counted()
    out = []
    for landmark in [*plan.landmarks, None]:
        opts = replace(options or BestResponseOptions(), orr_categories=cats, landmark_day=landmark)
        best = derive_best_response(study, opts, split_dose_gap_days=split_dose_gap_days)
        mapped = (pl.col("best_response").replace(plan.category_map) if plan.category_map
                  else pl.col("best_response"))
        out.append(best.with_columns(pl.lit(landmark, dtype=pl.Float64).alias("landmark_day"),
                                     mapped.alias("protocol_category")))
    return pl.concat(out, how="diagonal_relaxed")


def protocol_orr_from(best: pl.DataFrame, protocol) -> pl.DataFrame:
    """The protocol's ORR at each landmark from :func:`derive_protocol_best_response`, with its exact
    (Clopper-Pearson) 95% CI."""
    from cartlab.response.best import orr

    if protocol.response is None:
        return pl.DataFrame()
    cats = protocol.response.counted()
    out = []
    for landmark in [*protocol.response.landmarks, None]:
        mine = best.filter(pl.col("landmark_day").is_null() if landmark is None
                           else pl.col("landmark_day") == landmark).drop("landmark_day")
        rate = orr(mine, cats)
        out.append(rate.select(
            pl.lit(protocol.id).alias("protocol"),
            pl.lit(landmark, dtype=pl.Float64).alias("landmark_day"),
            pl.lit(protocol.response.definition()).alias("orr_definition"),
            pl.all(),
        ).with_columns(pl.lit(protocol.response.citation + (
            f"; {protocol.response.category_map_citation.strip()}" if protocol.response.category_map else ""))
            .alias("citation")))
    return pl.concat(out, how="diagonal_relaxed")
