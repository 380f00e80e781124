"""One day formatter for messages, report tables and dashboard labels (session 34): before, the
report printed 14.001 as "14." and the dashboard as "14.0" (and -0.004 as "-0.0"). Expectations by
hand: round to 2 decimals, whole days without decimals, trailing zeros dropped."""

from __future__ import annotations

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartlab._days import day_expr, day_text


@pytest.mark.parametrize("v, text", [(14.001, "14"), (13.999999, "14"), (-0.004, "0"), (14.5, "14.5"),
                                     (-0.666667, "-0.67"), (3.0, "3"), (13.416666, "13.42"), (-7.0, "-7"),
                                     (0.1, "0.1"), (100.25, "100.25")])
def test_day_text_by_hand(v, text):
    from cartlab.app.figures import _day_text
    from cartlab.report.cells import _day

    assert day_text(v) == text
    assert _day(v) == text  # the report's cells
    assert pl.DataFrame({"day": [v]}).select(_day_text())["day"][0] == text  # the dashboard's labels


@settings(max_examples=200, deadline=None)
@given(st.floats(-400, 400, allow_nan=False))
def test_the_expression_and_the_function_agree(v):
    got = pl.DataFrame({"d": [v]}).select(day_expr(pl.col("d")))["d"][0]
    assert got == day_text(v)
    assert not got.endswith(".") and got != "-0"
    assert abs(float(got) - v) <= 0.005 + 1e-9  # within half a hundredth (ties: half away from zero)


def test_nan_and_inf_days_are_null_not_an_error():
    """day_text gives "?" for NaN; the expression gives null (a failed Int64 cast before)."""
    got = pl.DataFrame({"d": [float("nan"), float("inf"), 2.5, None]}).select(day_expr(pl.col("d")))["d"].to_list()
    assert got == [None, None, "2.5", None]
