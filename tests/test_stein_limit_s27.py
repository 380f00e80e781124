"""stein_observations: a below-limit row shows the limit the fit censored it at (traceability audit s27,
finding 11: `lloq` was blank for "<x" rows although the bound was used)."""

from __future__ import annotations

import polars as pl

from cartlab.kinetics.stein import STEIN_2019, SteinModel, simulate


def test_blq_rows_carry_the_limit_used():
    sim = simulate(2, seed=3, params=STEIN_2019)
    # a user's table: "<5000" on BLQ rows (a censoring bound), no lloq column value
    frame = sim.select(
        "subject_id", "time",
        pl.when(pl.col("blq")).then(None).otherwise(pl.col("conc")).alias("conc"),
        pl.lit(None, dtype=pl.Float64).alias("lloq"),
        pl.when(pl.col("blq")).then(pl.lit("<")).alias("censor"),
        pl.when(pl.col("blq")).then(pl.lit(5000.0)).alias("censor_limit"),
    )
    obs = SteinModel().fit(frame).observations_
    blq = obs.filter(pl.col("blq"))
    assert blq.height == sim["blq"].sum() > 0
    assert blq["limit"].to_list() == [5000.0] * blq.height  # the "<5000" bound, by construction
    assert obs.filter(~pl.col("blq"))["limit"].null_count() == obs.filter(~pl.col("blq")).height
