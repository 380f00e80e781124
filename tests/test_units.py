"""Unit conversion (pint) — exact factors, errors for unknown or wrong-dimension units."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cartlab.io import load_dictionary
from cartlab.units import UnitError, conversion, normalise_spelling


@pytest.mark.parametrize(
    "unit, canonical, kw, scale, offset",
    [
        ("/uL", "10^9/L", {}, 0.001, 0.0),
        ("cells/uL", "10^9/L", {}, 0.001, 0.0),
        ("/mm3", "10^9/L", {}, 0.001, 0.0),
        ("10^3/uL", "10^9/L", {}, 1.0, 0.0),
        ("x10^9/L", "10^9/L", {}, 1.0, 0.0),
        ("GI/L", "10^9/L", {}, 1.0, 0.0),
        # UCUM writes 10^9 as "10*9": read literally it would be 90 (a 1e7-fold error)
        ("10*9/L", "10^9/L", {}, 1.0, 0.0),
        ("10*3/uL", "10^9/L", {}, 1.0, 0.0),
        ("10**9/L", "10^9/L", {}, 1.0, 0.0),
        ("10*6/L", "10^9/L", {}, 0.001, 0.0),
        ("G/L", "10^9/L", {}, 1.0, 0.0),
        ("K/uL", "10^9/L", {}, 1.0, 0.0),
        ("K/µL", "10^9/L", {}, 1.0, 0.0),
        ("thou/uL", "10^9/L", {}, 1.0, 0.0),  # thousand per uL = 1e3 * 1e6/L = 1e9/L
        ("mm Hg", "mmHg", {}, 1.0, 0.0),  # AMA style, with a space
        ("T/L", "10^9/L", {}, 1000.0, 0.0),
        ("g/dL", "g/L", {}, 10.0, 0.0),
        ("mg/dL", "mg/L", {}, 10.0, 0.0),
        ("mg/dL", "g/L", {}, 0.01, 0.0),
        ("ng/mL", "ug/L", {}, 1.0, 0.0),
        ("ng/L", "pg/mL", {}, 1.0, 0.0),
        ("IU/L", "U/L", {}, 1.0, 0.0),
        ("mEq/L", "mmol/L", {"equivalents_per_mol": 1}, 1.0, 0.0),
        ("mEq/L", "mmol/L", {"equivalents_per_mol": 2}, 0.5, 0.0),
        ("copies/µg", "copies/ug gDNA", {}, 1.0, 0.0),
        ("10^9/L", "cells/uL", {}, 1000.0, 0.0),
        ("%", "fraction", {}, 0.01, 0.0),
    ],
)
def test_exact_factors(unit, canonical, kw, scale, offset):
    c = conversion(unit, canonical, **kw)
    assert c.scale == scale and c.offset == offset


def test_molar_conversions_match_conventional_factors():
    # conventional SI factors (mg/dL -> umol/L): bilirubin 17.1, creatinine 88.4
    assert conversion("mg/dL", "umol/L", 584.66).scale == pytest.approx(17.104, rel=1e-4)
    assert conversion("mg/dL", "umol/L", 113.12).scale == pytest.approx(88.40, rel=1e-4)
    # hemoglobin 1 g/dL = 0.6206 mmol/L (monomer)
    assert conversion("g/dL", "mmol/L", 16114.5).scale == pytest.approx(0.6206, rel=1e-4)


def test_fahrenheit():
    c = conversion("F", "degC")
    assert c(212.0) == pytest.approx(100.0, abs=1e-9)
    assert c(32.0) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("bad", ["furlong", "g/L", "mg", "zz/L", "mg/dl/x", "G/dL", "K", "10*x/L"])
def test_wrong_units_raise(bad):
    with pytest.raises(UnitError):
        conversion(bad, "10^9/L")


def test_every_dictionary_spelling_converts():
    d = load_dictionary()
    for p in d.params.values():
        for u in (p.unit, *p.accepts):
            c = p.conversion_from(u)
            assert math.isfinite(c.scale) and c.scale > 0, (p.code, u)


def test_empty_unit_only_where_documented():
    d = load_dictionary()
    assert d["MRDFCM"].conversion_from("").scale == 1.0  # spec: empty = fraction
    assert d["MRDFCM"].conversion_from("%").scale == 0.01
    with pytest.raises(UnitError, match="unit missing"):
        d["NEUT"].conversion_from("")
    with pytest.raises(UnitError, match="unit missing"):
        d["TEMP"].conversion_from(None)
    with pytest.raises(UnitError):
        d["ICE"].conversion_from("mg")


@given(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False))
def test_conversions_are_affine_and_invertible(x):
    to_c = conversion("F", "degC")
    back = conversion("degC", "F")
    assert back(to_c(x)) == pytest.approx(x, rel=1e-12, abs=1e-9)
    per_ul = conversion("/uL", "10^9/L")
    assert per_ul(x) == pytest.approx(x / 1000.0, rel=1e-15, abs=0)


@given(st.text(max_size=12))
def test_normalise_never_crashes(s):
    out = normalise_spelling(s)
    assert isinstance(out, str)


def test_a_unit_of_the_wrong_dimension_says_how_it_was_read_and_what_is_accepted():
    """'deg R' is degree x gas constant to pint and 'mm/uL' is a length per microlitre: the error says so
    and lists the parameter's accepted spellings, instead of only "different dimension". ('thou/uL', thou
    a length to pint, is read as the US lab spelling "thousand per uL" since s27; 'deg F' is degF since
    session 31.)"""
    from cartlab.io.dictionary import load_dictionary

    with pytest.raises(UnitError) as exc:
        load_dictionary()["TEMP"].conversion_from("deg R")
    msg = str(exc.value)
    assert "read as 'degree * molar_gas_constant'" in msg and "TEMP accepts degC" in msg and "°F" in msg
    with pytest.raises(UnitError, match=r"read as 'millimeter / microliter'.*NEUT accepts 10\^9/L, /uL"):
        load_dictionary()["NEUT"].conversion_from("mm/uL")
