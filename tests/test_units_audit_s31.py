"""Session 31: the metamorphic units audit (/work/notes/audit_units: every observation re-expressed in
each unit the study-format dictionary accepts). Each case is a minimised finding; expected values by
hand from the study-format contract ("an unknown unit is an error, not a guess"; value_text is "a
categorical result ... or a censored result such as <50") and the unit definitions quoted inline."""

from __future__ import annotations

import warnings

import polars as pl
import pytest
from typer.testing import CliRunner

from cartlab.cli import app
from cartlab.io import read_study
from cartlab.io.dictionary import load_dictionary
from cartlab.io.errors import StudyValidationError
from cartlab.kinetics.exposure import derive_exposure_response
from cartlab.units import UnitError

SUBJECTS = "subject_id,age_years,disease\nP1,50,AML\n"


def _study(tmp_path, obs: str, doses: str | None = None):
    (tmp_path / "subjects.csv").write_text(SUBJECTS)
    (tmp_path / "observations.csv").write_text(obs)
    if doses is not None:
        (tmp_path / "doses.csv").write_text(doses)
    return tmp_path


# -- F1: a count unit whose superscript was lost in copying ("10⁹/L" -> "109/L") -----------------

@pytest.mark.parametrize("unit", ["109/L", "103/uL", "10 9/L", "10.9/L"])
def test_a_lost_superscript_is_an_error_not_109_per_litre(unit):
    # pint reads "109/L" as 109 per litre: NEUT 0.5 would become 5.45e-8 x 10^9/L (grade 4)
    with pytest.raises(UnitError, match="holds the factor"):
        load_dictionary()["NEUT"].conversion_from(unit)


@pytest.mark.parametrize("unit, scale", [
    ("1000/uL", 1.0),     # 1000 per uL = 1e3 * 1e6 per L = 1e9/L: one unit of 10^9/L
    ("10^9/L", 1.0), ("10*9/L", 1.0), ("10E9/L", 1.0), ("X10^9/L", 1.0), ("x10^9/L", 1.0),
    ("G/l", 1.0),         # giga per litre with a lower-case litre (pint alone reads gauss)
    ("/mm3", 0.001),      # 1 mm3 = 1 uL: /uL -> 10^9/L is / 1000
])
def test_powers_of_ten_in_any_spelling_still_convert(unit, scale):
    assert load_dictionary()["NEUT"].conversion_from(unit).scale == pytest.approx(scale, rel=1e-12)


def test_validate_names_file_row_and_column_of_a_lost_superscript(tmp_path):
    folder = _study(tmp_path, "subject_id,day,param,value,unit\nP1,1,NEUT,0.5,109/L\nP1,2,NEUT,0.5,10^9/L\n")
    with pytest.raises(StudyValidationError) as exc:
        read_study(folder)
    (issue,) = exc.value.issues
    assert (issue.file, issue.rows, issue.column) == ("observations.csv", [1], "unit")


# -- F6: unit messages and spellings ------------------------------------------------------------------

@pytest.mark.parametrize("code, unit, scale, offset", [
    ("TEMP", "°c", 1.0, 0.0), ("TEMP", "ºC", 1.0, 0.0), ("TEMP", "℃", 1.0, 0.0), ("TEMP", "Celsius", 1.0, 0.0),
    ("TEMP", "K", 1.0, -273.15),   # kelvin: 311.15 K = 38.00 degC
    ("ALT", "units/L", 1.0, 0.0), ("ALT", "iu/L", 1.0, 0.0), ("ALT", "Units/L", 1.0, 0.0),
    ("CARCOPY", "copies/ug DNA", 1.0, 0.0), ("CARCOPY", "copies/µg genomic DNA", 1.0, 0.0),
])
def test_spellings_users_write_are_read(code, unit, scale, offset):
    c = load_dictionary()[code].conversion_from(unit)
    assert (c.scale, c.offset) == pytest.approx((scale, offset), abs=1e-9)


def test_fahrenheit_glyph_reads_as_fahrenheit():
    c = load_dictionary()["TEMP"].conversion_from("℉")
    assert c(100.4) == pytest.approx(38.0, abs=1e-9)  # (100.4 - 32) * 5/9


@pytest.mark.parametrize("code, unit, read", [("CREAT", "%", "percent"), ("HGB", "g", "gram")])
def test_a_known_unit_of_the_wrong_dimension_says_so(code, unit, read):
    with pytest.raises(UnitError, match=f"read as '{read}'.*different dimension"):
        load_dictionary()[code].conversion_from(unit)


def test_an_angle_is_not_a_temperature():
    # pint: "deg K" is degree (an angle, a pure number: pi/180) x kelvin -> it would convert with 0.01745
    with pytest.raises(UnitError, match="an angle"):
        load_dictionary()["TEMP"].conversion_from("deg K")


# -- F5: value_text that is neither a vocabulary word nor a censored number ---------------------------

@pytest.mark.parametrize("row, text", [
    ("P1,1,CARCOPY,,<50 copies/ug,copies/ug,50", "<50 copies/ug"),  # a unit inside the text
    ("P1,1,MRDFCM,,negative,%,", "negative"),                        # a word for a numeric param
    ("P1,1,CARCOPY,,BLQ,copies/ug,", "BLQ"),                         # BLQ without an lloq: bound unknown
    ("P1,1,CARCOPY,,NA,copies/ug,", "NA"),
])
def test_value_text_that_no_engine_can_read_is_an_error(tmp_path, row, text):
    folder = _study(tmp_path, f"subject_id,day,param,value,value_text,unit,lloq\n{row}\n")
    with pytest.raises(StudyValidationError) as exc:
        read_study(folder)
    (issue,) = exc.value.issues
    assert (issue.file, issue.rows, issue.column) == ("observations.csv", [1], "value_text")
    assert repr(text) in issue.message


def test_a_row_with_both_a_value_and_a_censored_text_is_an_error(tmp_path):
    folder = _study(tmp_path, "subject_id,day,param,value,value_text,unit,lloq\nP1,5,CARCELL,12,<0.05,10^9/L,0.05\n")
    with pytest.raises(StudyValidationError, match="give one of them"):
        read_study(folder)


def test_blq_with_an_lloq_reads_as_below_that_lloq(tmp_path):
    # BLQ on a row whose lloq is 50 copies/ug = the censored result "<50"
    folder = _study(tmp_path, "subject_id,day,param,value,value_text,unit,lloq\n"
                              "P1,7,CARCOPY,,BLQ,copies/ug gDNA,50\nP1,8,CARCOPY,,<50,copies/ug gDNA,50\n")
    o = read_study(folder).observations.sort("day")
    assert o["censor"].to_list() == ["<", "<"]
    assert o["censor_limit"].to_list() == [50.0, 50.0]


def test_censored_text_of_the_categorical_param_is_still_refused(tmp_path):
    folder = _study(tmp_path, "subject_id,day,param,value,value_text,unit\nP1,1,LOC,,sleepy,\n")
    with pytest.raises(StudyValidationError, match="not a valid LOC"):
        read_study(folder)


# -- F2: ADPC AVALC of a censored sample in AVALU (the canonical unit) ---------------------------------

CART = "subject_id,day,agent,dose,unit\nP1,0,CAR-T,1000000,cells/kg\n"


def test_adpc_avalc_bound_is_in_the_canonical_unit(tmp_path):
    from cartlab.kinetics.car import derive_adpc

    # CARCELL <0.05 x 10^9/L = 0.05e9 per L = 5e7 per L = 50 per uL (1 uL = 1e-6 L)
    obs = ("subject_id,day,param,value,value_text,unit,lloq\n"
           "P1,7,CARCELL,2,,10^9/L,0.05\nP1,14,CARCELL,0.5,,10^9/L,0.05\nP1,28,CARCELL,,<0.05,10^9/L,0.05\n"
           "P1,35,CARCELL,,BLQ,10^9/L,0.05\n")
    adpc = derive_adpc(read_study(_study(tmp_path, obs, CART)))
    blq = adpc.filter(pl.col("BLQFL") == "Y").sort("ADY")
    assert blq["AVALU"].to_list() == ["cells/uL", "cells/uL"]
    assert blq["AVALC"].to_list() == ["<50", "<50"]


# -- F3: kinetics of different measurements are never pooled -----------------------------------------

def _summary(params: list[str], cmax: list[float], responder: list[bool]) -> pl.DataFrame:
    unit = {"CARCOPY": "copies/ug gDNA", "CARCELL": "cells/uL"}
    return pl.DataFrame({
        "subject_id": [f"S{i}" for i in range(len(params))], "car_param": params,
        "car_unit": [unit[p] for p in params], "car_cmax": cmax, "car_auc_0_28": cmax,
        "best_response": ["CR" if r else "NR" for r in responder], "crs_grade_astct": [1] * len(params),
    })


def test_exposure_response_is_per_param_with_a_warning():
    # 4 CARCOPY subjects (copies/ug) and 4 CARCELL subjects (cells/uL): two sets of rows, each n = 4
    s = _summary(["CARCOPY"] * 4 + ["CARCELL"] * 4, [1e5, 2e5, 1e3, 2e3, 50, 60, 5, 6],
                 [True, True, False, False, True, True, False, False])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = derive_exposure_response(s, outcomes=("responder",))
    assert any("analysed per param" in str(x.message) for x in w)
    rows = out.filter(pl.col("exposure") == "car_cmax").sort("param")
    assert rows["param"].to_list() == ["CARCELL", "CARCOPY"]
    assert rows["unit"].to_list() == ["cells/uL", "copies/ug gDNA"]
    assert rows["n"].to_list() == [4, 4]
    # medians by hand: CARCELL responders (50, 60) -> 55, non (5, 6) -> 5.5; CARCOPY 1.5e5 and 1500
    assert rows["median_event"].to_list() == [55.0, 150000.0]
    assert rows["median_no_event"].to_list() == [5.5, 1500.0]


def test_one_param_gives_one_set_of_rows_without_a_pooling_warning():
    s = _summary(["CARCOPY"] * 4, [1e5, 2e5, 1e3, 2e3], [True, True, False, False])
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = derive_exposure_response(s, outcomes=("responder",))
    assert not any("analysed per param" in str(x.message) for x in w)
    assert out["param"].to_list() == ["CARCOPY", "CARCOPY"]


def test_subject_summary_says_which_measurement_the_kinetics_come_from(tmp_path):
    obs = ("subject_id,day,param,value,unit\n"
           "P1,7,CARCELL,2,10^9/L\nP1,14,CARCELL,0.5,10^9/L\n")
    (tmp_path / "s").mkdir()
    res = CliRunner().invoke(app, ["analyze", str(_study(tmp_path / "s", obs, CART)), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    row = pl.read_csv(tmp_path / "o" / "subject_summary.csv").row(0, named=True)
    # 2 x 10^9/L = 2000 cells/uL (10^9 per L / 10^6 uL per L)
    assert (row["car_param"], row["car_unit"], row["car_cmax"]) == ("CARCELL", "cells/uL", 2000.0)
