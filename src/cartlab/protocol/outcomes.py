"""The protocol's own response endpoint: ORR by the trial's definition at its landmarks.

``protocol_orr(study, protocol)`` runs the best-response engine with the protocol's ORR categories
(e.g. NCT04762485: CR + CRi + MLFS + PR) once per landmark day (assessments up to that day) and
once without a landmark, and gives the rate with its exact Clopper-Pearson CI
(:func:`cartlab.response.endpoints.response_rate`).
"""

from __future__ import annotations

import polars as pl

__all__ = ["protocol_orr"]


def protocol_orr(study, protocol) -> pl.DataFrame:
    """ORR by ``protocol.response`` (empty frame when the protocol has no response plan)."""
    from cartlab.response.best import BestResponseOptions, derive_best_response, orr

    if protocol.response is None:
        return pl.DataFrame()
    cats = tuple(protocol.response.orr_categories)
    out = []
    for landmark in [*protocol.response.landmarks, None]:
        opts = BestResponseOptions(orr_categories=cats, landmark_day=landmark)
        rate = orr(derive_best_response(study, opts), cats)
        out.append(rate.select(
            pl.lit(protocol.id).alias("protocol"),
            pl.lit(landmark, dtype=pl.Float64).alias("landmark_day"),
            pl.lit(" + ".join(cats)).alias("orr_definition"),
            pl.all(),
        ).with_columns(pl.lit(protocol.response.citation).alias("citation")))
    return pl.concat(out, how="diagonal_relaxed")
