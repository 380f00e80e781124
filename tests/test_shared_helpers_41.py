"""Session 41 (issue 14, duplicates): the helpers that now serve two places each.

Expected values are worked out by hand from the inputs written here (comments say how), not taken
from the program's output."""

from __future__ import annotations

import polars as pl
import pytest

from cartlab.grading.hemato_common import nadir_exprs, nadir_key
from cartlab.provenance import evidence_list
from cartlab.report.html import _text_columns
from cartlab.response.endpoint_options import check_choice


def test_evidence_list_reads_a_list_or_the_csv_text():
    assert evidence_list(None) == []
    # the CSV's "a; b" text: split at ";", parts stripped, empty parts dropped
    assert evidence_list("observations.csv:3; doses.csv:1; ") == ["observations.csv:3", "doses.csv:1"]
    # a list column's value: null items dropped, the rest as text
    assert evidence_list(["events.csv:2", None]) == ["events.csv:2"]


def test_nadir_orders_a_censored_result_by_its_bound():
    # ANC 0.3 on day 5, "<0.1" (no number) on day 7, 0.8 on day 9: ordered by 0.3, 0.1 (the bound), 0.8,
    # so the lowest is the censored day 7 (no number, its text kept) and the second lowest 0.3 on day 5
    rows = pl.DataFrame({"subject_id": ["s1"] * 3, "day": [5, 7, 9], "anc": [0.3, None, 0.8],
                         "anc_censored": [None, "<0.1", None]})
    out = (rows.sort(nadir_key("anc", "anc_censored"), "day", nulls_last=True)
           .group_by("subject_id").agg(*nadir_exprs("anc", "anc_censored", "late_anc")))
    assert out.row(0, named=True) == {
        "subject_id": "s1", "late_anc_nadir": None, "late_anc_nadir_day": 7, "late_anc_confirmed": 0.3,
        "late_anc_confirmed_day": 5, "_late_anc_nadir_cs": "<0.1", "_late_anc_confirmed_cs": None}


def test_nadir_of_one_measurement_has_no_confirmed_value():
    # a single count: it is the nadir; there is no second lowest (null, not an error)
    rows = pl.DataFrame({"subject_id": ["s1"], "day": [40], "plt": [12.0], "plt_censored": [None]},
                        schema_overrides={"plt_censored": pl.String})
    out = rows.group_by("subject_id").agg(*nadir_exprs("plt", "plt_censored", "late_plt"))
    assert out.select("late_plt_nadir", "late_plt_nadir_day", "late_plt_confirmed", "late_plt_confirmed_day").row(0) \
        == (12.0, 40, None, None)


def test_check_choice_names_the_option_and_its_values():
    check_choice("population", "all", ("infused", "all"))  # allowed: no error
    with pytest.raises(ValueError) as e:
        check_choice("population", "everyone", ("infused", "all"))
    assert str(e.value) == "population must be 'infused' or 'all', got 'everyone'"
    with pytest.raises(ValueError) as e:
        check_choice("x", None, ("a", "b", "c"))
    assert str(e.value) == "x must be 'a', 'b' or 'c', got None"


def test_text_columns_on_a_frame_without_rows_are_null_text():
    empty = pl.DataFrame(schema={"v": pl.Float64})
    out = _text_columns(empty, _v=pl.col("v").map_elements(lambda v: f"{v:g}", return_dtype=pl.String))
    assert out.schema == {"v": pl.Float64, "_v": pl.String} and out.height == 0
    # with rows the expression is evaluated: 2.5 -> "2.5"
    text = pl.col("v").map_elements(lambda v: f"{v:g}", return_dtype=pl.String)
    out = _text_columns(pl.DataFrame({"v": [2.5]}), _v=text)
    assert out["_v"].to_list() == ["2.5"]
