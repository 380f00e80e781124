"""Session 47 fixes of the response engines (notes/review47_response, fix47_response). Expected values
are worked by hand from the quoted sources and the criteria tables' rule text, never copied from
cartlab's output:

* ELN 2022 Table 7: CR = BM blasts < 5%, no circulating blasts, no EMD, ANC >= 1.0, PLT >= 100 x10^9/L;
  CRh ANC >= 0.5 and PLT >= 50; CRi "All CR criteria except for residual neutropenia <1.0 ... or
  thrombocytopenia <100"; MFC MRD threshold 0.1% = 0.001. "Refractory disease: No CR, CRh, or CRi at
  the response landmark" (view-large/12166960).
* ELN 2021 MRD D2: "For patients with mutant NPM1, CBF AML (RUNX1-RUNX1T1 or CBFB-MYH11), or APL
  (PML-RARA), we recommend molecular MRD assessment by qPCR or dPCR".
* ELN 2021 MRD relapse (wording unverified): conversion from MRD negativity to positivity, independent
  of MRD technique; a >= 1 log10 rise between two positive samples.
* Project rule (spec "Response"): a missing input never yields a definitive negative and is named.
"""

from __future__ import annotations

import math

import pytest

from cartlab.response import ResponseOptions, derive_marrow_response
from cartlab.response.best import BestResponseOptions, derive_best_response
from cartlab.response.marrow import derive_relapse
from test_response_s41 import marrow, o, quiet, row, study  # the hand-made study helpers of review 41


def npm1(sid, day, value="", text="", lloq="", specimen="BM", analyte="NPM1", param="FUSION"):
    return o(sid, day, param, value, text=text, specimen=specimen, analyte=analyte, lloq=lloq)


def relapse_row(s, **opts):
    options = ResponseOptions(**opts)
    a = quiet(derive_marrow_response, s, options)
    return quiet(derive_relapse, s, a, options).row(0, named=True)


# ---------------------------------------------------------------------------------------------
# F1: molecular MRD relapse (review 47 L05_molrel)


def _l05(tmp_path):
    # Pre-treatment 40% blasts; CR on day 28 with MRDFCM 1e-4 (< 0.001: MRD negative, flow); NPM1 (FUSION,
    # BM) 20% on day -3, "<0.01" on day 28, 0.05 on day 60, 0.5 on day 90 (BM blasts 1% on day 90, MRDFCM
    # 2e-4: still CR MRD- by flow). By hand: in CR from day 28; "<0.01" is below detection (negative);
    # 0.05 on day 60 is the first positive after it (conversion), confirmed by the next NPM1 sample (0.5
    # on day 90, positive); 0.05 -> 0.5 is a rise of log10(10) = 1.00 >= 1 on day 90. Earliest: day 60.
    return study(tmp_path, [o("S1", -7, "BMBLAST", 40), npm1("S1", -3, 20), *marrow("S1", 28, 1, mrd=1e-4),
                            npm1("S1", 28, text="<0.01"), npm1("S1", 60, 0.05), npm1("S1", 90, 0.5),
                            *marrow("S1", 90, 1, mrd=2e-4)])


def test_flow_only_mrd_relapse_reason_names_the_molecular_conversion(tmp_path):
    # default mrd_relapse_methods=flow: no MRD relapse (flow never converted), but the reason must not
    # claim "no conversion" without saying it is flow only, and must name NPM1's conversion and rise
    r = relapse_row(_l05(tmp_path))
    assert r["mrd_relapse_day"] is None and r["mrd_relapse_rule"] is None
    why = r["mrd_relapse_reason"]
    assert "MRD relapse read from flow (MRDFCM) only" in why
    assert "FUSION NPM1 (BM)" in why and "<0.01 on day 28" in why and "0.05 on day 60" in why
    assert "0.5 on day 90" in why and "not assessed for MRD relapse (option mrd_relapse_methods=flow" in why
    assert "rise of 1.00 log10" in why
    # the rows it names are in the evidence (data rows, header not counted: day -7 BMBLAST row 1, day -3
    # NPM1 row 2, marrow day 28 rows 3-7, NPM1 day 28 row 8, day 60 row 9, day 90 row 10)
    assert {"observations.csv:8", "observations.csv:9", "observations.csv:10"} <= set(r["evidence"])
    assert "(observations.csv:8) then 0.05 on day 60 (observations.csv:9)" in why


def test_flow_and_molecular_dates_the_molecular_conversion(tmp_path):
    r = relapse_row(_l05(tmp_path), mrd_relapse_methods="flow_and_molecular")
    assert (r["mrd_relapse_day"], r["mrd_relapse_rule"]) == (60.0, "response.mrd_relapse_molecular")
    assert "confirmed by the next, 0.5 on day 90" in r["mrd_relapse_reason"]
    assert "response.mrd_relapse_molecular_rise" in r["mrd_relapse_reason"]  # the rise is named too
    (tmp_path / "b").mkdir()
    b = quiet(derive_best_response, _l05(tmp_path / "b"),
              BestResponseOptions(response=ResponseOptions(mrd_relapse_methods="flow_and_molecular"))).row(0, named=True)
    assert b["mrd_relapse_day"] == 60.0


def test_molecular_rise_of_one_log_while_in_cr(tmp_path):
    # NPM1 never undetectable after CR (low-level positive): 0.05 on day 28, 0.06 on day 60, 0.6 on day 90.
    # By hand: no conversion (no negative sample); rise: 0.6 / 0.05 = 12 -> log10 1.08 >= 1 on day 90
    # (the lowest earlier positive is 0.05). S2: 0.05 then 0.4 -> log10 8 = 0.90 < 1: no MRD relapse.
    s = study(tmp_path, [o("S1", -7, "BMBLAST", 40), *marrow("S1", 28, 1, mrd=1e-4), npm1("S1", 28, 0.05),
                         npm1("S1", 60, 0.06), npm1("S1", 90, 0.6),
                         o("S2", -7, "BMBLAST", 40), *marrow("S2", 28, 1, mrd=1e-4), npm1("S2", 28, 0.05),
                         npm1("S2", 90, 0.4)], subjects=(("S1", "AML"), ("S2", "AML")))
    options = ResponseOptions(mrd_relapse_methods="flow_and_molecular")
    rel = quiet(derive_relapse, s, quiet(derive_marrow_response, s, options), options)
    r1, r2 = row(rel, "S1"), row(rel, "S2")
    assert (r1["mrd_relapse_day"], r1["mrd_relapse_rule"]) == (90.0, "response.mrd_relapse_molecular_rise")
    assert f"{math.log10(12):.2f} log10" in r1["mrd_relapse_reason"]
    assert r2["mrd_relapse_day"] is None and r2["mrd_relapse_rule"] is None
    assert "no conversion to positive nor >= 1 log10 rise" in r2["mrd_relapse_reason"]


def test_molecular_conversion_not_yet_confirmed_is_possible(tmp_path):
    # "<0.01" on day 28 then 0.05 on day 60 and nothing later: by hand a conversion waiting for its
    # confirming sample (mrd_relapse_confirm=next_sample): possible MRD relapse on day 60, not dated.
    s = study(tmp_path, [o("S1", -7, "BMBLAST", 40), *marrow("S1", 28, 1, mrd=1e-4), npm1("S1", 28, text="<0.01"),
                         npm1("S1", 60, 0.05)])
    r = relapse_row(s, mrd_relapse_methods="flow_and_molecular")
    assert r["mrd_relapse_day"] is None
    assert (r["mrd_relapse_rule"], r["mrd_relapse_possible_day"]) == ("response.mrd_relapse_possible", 60.0)


# ---------------------------------------------------------------------------------------------
# F4: confirmation window (review 47 M05_gap)


def test_mrd_relapse_confirmation_window(tmp_path):
    # CR MRD- on day 28 (1e-4); MRDFCM 0.002 (>= 0.001: positive) on day 60 and day 180. By hand: default
    # (no window) -> MRD relapse day 60 confirmed by day 180 (today's value); window 28 days -> the
    # confirming sample is 180 - 60 = 120 days later, > 28: not confirmed -> possible MRD relapse (day 60).
    obs = [o("S1", -7, "BMBLAST", 40), *marrow("S1", 28, 1, mrd=1e-4), o("S1", 60, "MRDFCM", 0.002, unit="fraction"),
           o("S1", 180, "MRDFCM", 0.002, unit="fraction")]
    s = study(tmp_path, obs)
    assert relapse_row(s)["mrd_relapse_day"] == 60.0
    r = relapse_row(s, mrd_relapse_confirm_within_days=28)
    assert r["mrd_relapse_day"] is None
    assert (r["mrd_relapse_rule"], r["mrd_relapse_possible_day"]) == ("response.mrd_relapse_possible", 60.0)
    assert "120 days later, more than mrd_relapse_confirm_within_days=28" in r["mrd_relapse_reason"]
    # a window of 120 days or more keeps the confirmation
    assert relapse_row(s, mrd_relapse_confirm_within_days=120)["mrd_relapse_day"] == 60.0
    with pytest.raises(ValueError):
        ResponseOptions(mrd_relapse_confirm_within_days=-1)


# ---------------------------------------------------------------------------------------------
# F6: refractory at the landmark (review 47 F01, F02, A02, A01, A12)


def test_refractory_at_the_landmark(tmp_path):
    # By hand, landmark day 28: F1 MLFS on day 28 (ANC 0.1, PLT 10: CR/CRh/CRi fail) and CR on day 56 (after
    # the landmark) -> refractory true; P1 PR on day 28 (5% blasts, 87.5% reduction) -> true; C1 CR on day
    # 28 -> false; N1 no PBBLAST on day 28 (NE, could be CR/CRh/CRi/MLFS) -> empty (missing is not negative).
    obs = [o("F1", -7, "BMBLAST", 40), *marrow("F1", 28, 2, anc=0.1, plt=10), *marrow("F1", 56, 2),
           o("P1", -7, "BMBLAST", 40), *marrow("P1", 28, 5),
           o("C1", -7, "BMBLAST", 40), *marrow("C1", 28, 1),
           o("N1", -7, "BMBLAST", 40), o("N1", 28, "BMBLAST", 1), o("N1", 28, "NEUT", 2.0, unit="10^9/L", specimen="PB"),
           o("N1", 28, "PLAT", 150, unit="10^9/L", specimen="PB")]
    subjects = tuple((s, "AML") for s in ("F1", "P1", "C1", "N1"))
    s = study(tmp_path, obs, subjects=subjects)
    b = quiet(derive_best_response, s, BestResponseOptions(landmark_day=28))
    got = {sid: row(b, sid)["refractory"] for sid in ("F1", "P1", "C1", "N1")}
    assert got == {"F1": True, "P1": True, "C1": False, "N1": None}
    assert "refractory disease: no CR/CRh/CRi by the landmark day 28" in row(b, "F1")["reason"]
    assert "refractory undetermined" in row(b, "N1")["reason"]
    # without a landmark: not derived (empty), as before
    assert quiet(derive_best_response, s)["refractory"].null_count() == 4


# ---------------------------------------------------------------------------------------------
# F3: a missing count (review 47 A10, A11)


def test_missing_count_option(tmp_path):
    # A1: blasts 3%, PB 0, PLT 150, ANC missing. By hand: CR (ANC >= 1.0) and CRh (ANC >= 0.5) open; CRi
    # holds (PLT >= 100 recovered) -> lower_bound (default): CRi, could be CR, CRh (today); not_evaluable:
    # NE (eln2022.NE.missing_count), could be CR, CRh, CRi. M1: blasts 3%, PLT 10, ANC missing: CR/CRh fail
    # (PLT), CRi open (ANC), MLFS holds -> MLFS could be CRi either way (MLFS asserts no count).
    obs = [o("A1", -7, "BMBLAST", 40), o("A1", 28, "BMBLAST", 3), o("A1", 28, "PBBLAST", 0, specimen="PB"),
           o("A1", 28, "PLAT", 150, unit="10^9/L", specimen="PB"),
           o("M1", -7, "BMBLAST", 40), o("M1", 28, "BMBLAST", 3), o("M1", 28, "PBBLAST", 0, specimen="PB"),
           o("M1", 28, "PLAT", 10, unit="10^9/L", specimen="PB")]
    s = study(tmp_path, obs, subjects=(("A1", "AML"), ("M1", "AML")))
    a = quiet(derive_marrow_response, s)
    assert (row(a, "A1")["category"], row(a, "A1")["could_be"]) == ("CRi", ["CR", "CRh"])
    opts = ResponseOptions(missing_count="not_evaluable")
    a = quiet(derive_marrow_response, s, opts)
    r = row(a, "A1")
    assert (r["category"], r["rule"], r["could_be"]) == ("NE", "eln2022.NE.missing_count", ["CR", "CRh", "CRi"])
    assert any("ANC" in m for m in r["missing_inputs"])
    assert (row(a, "M1")["category"], row(a, "M1")["could_be"]) == ("MLFS", ["CRi"])
    b = row(quiet(derive_best_response, s, BestResponseOptions(response=opts)), "A1")
    assert (b["best_response"], b["could_be"]) == ("NE", ["CR", "CRh", "CRi"])


# ---------------------------------------------------------------------------------------------
# F2: mrd_molecular=molecular_first (review 47 L07, L08)


def test_molecular_first_reads_an_eln_d2_marker(tmp_path):
    # CR on day 28 for all. P1: MRDFCM 1e-4 (flow negative) and NPM1 1.5% (BM, positive). By hand: default
    # -> CR_MRD- (flow; today); molecular_first -> NPM1 decides: MRD positive, category_mrd CR.
    # N1: no MRDFCM, NPM1 0 with lloq 0.001 -> molecular_first: undetectable = MRD negative, CR_MRD-.
    # R1: MRDFCM 1e-4, "RUNX1-RUNX1T1" 0.5 -> the same marker as RUNX1::RUNX1T1: positive.
    # X1: MRDFCM 1e-4, MOLVAF IDH1 5% (no D2 marker) -> flow decides: CR_MRD-.
    obs = [o("P1", -7, "BMBLAST", 40), *marrow("P1", 28, 1, mrd=1e-4), npm1("P1", 28, 1.5),
           o("N1", -7, "BMBLAST", 40), *marrow("N1", 28, 1), npm1("N1", 28, 0, lloq=0.001),
           o("R1", -7, "BMBLAST", 40), *marrow("R1", 28, 1, mrd=1e-4), npm1("R1", 28, 0.5, analyte="RUNX1-RUNX1T1"),
           o("X1", -7, "BMBLAST", 40), *marrow("X1", 28, 1, mrd=1e-4),
           npm1("X1", 28, 5, analyte="IDH1", param="MOLVAF")]
    s = study(tmp_path, obs, subjects=tuple((x, "AML") for x in ("P1", "N1", "R1", "X1")))
    a = quiet(derive_marrow_response, s)
    assert (row(a, "P1")["category_mrd"], row(a, "P1")["mrd_negative"]) == ("CR_MRD-", True)
    assert row(a, "N1")["mrd_negative"] is None
    opts = ResponseOptions(mrd_molecular="molecular_first")
    a = quiet(derive_marrow_response, s, opts)
    p, n, r, x = (row(a, k) for k in ("P1", "N1", "R1", "X1"))
    assert (p["category_mrd"], p["mrd_negative"], p["mrd_rule"]) == ("CR", False, "eln2022.MRD_molecular")
    assert (n["category_mrd"], n["mrd_negative"], n["mrd_rule"]) == ("CR_MRD-", True, "eln2022.MRD_molecular")
    assert (r["mrd_negative"], r["mrd_rule"]) == (False, "eln2022.MRD_molecular")
    assert (x["category_mrd"], x["mrd_negative"], x["mrd_rule"]) == ("CR_MRD-", True, "eln2022.MRD_negative")
    assert "MRD by molecular marker (option mrd_molecular=molecular_first" in p["reason"]
    b = row(quiet(derive_best_response, s, BestResponseOptions(response=opts)), "P1")
    assert b["mrd_negative"] is False and "MRD positive by a molecular marker" in b["reason"]
