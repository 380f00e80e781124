"""icaht_daily / t_icaht_daily name the measured neighbours of an interpolated day (prev_day,
next_day were always empty: the check for a measured day ran after the interpolation filled it)."""

from __future__ import annotations

import polars as pl

from cartlab.analyze import Analysis
from test_response import make


def test_interpolated_days_name_their_neighbours():
    # NEUT 0.4 on day 0 and 1.2 on day 4: days 1-3 interpolated between days 0 and 4 (linear:
    # day 2 = 0.4 + 0.8 * 2/4 = 0.8); measured days have no neighbours
    s = make([(0, "NEUT", 0.4), (4, "NEUT", 1.2), (0, "PLAT", 30.0), (4, "PLAT", 50.0)])
    a = Analysis(s)
    for name, col in (("icaht_daily", "anc"), ("t_icaht_daily", "plt")):
        d = a.table(name).filter(pl.col("day").is_between(0, 4)).sort("day")
        assert d["source"].to_list() == ["measured", "interpolated", "interpolated", "interpolated", "measured"]
        assert d["prev_day"].to_list() == [None, 0, 0, 0, None], name
        assert d["next_day"].to_list() == [None, 4, 4, 4, None], name
    assert a.table("icaht_daily").filter(day=2)["anc"][0] == 0.8
