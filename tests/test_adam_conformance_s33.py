"""Session 33: CDISC conformance gaps of the ADaM export and the SDTM DM writer.

A tiny hand-written study (written out below): subject A (CD19 target, site Site-1, country DEU,
infused 2021-03-01, CAR-T split over days 0 and 2, fever on days 3-4, ICE 8 on day 6, CARCOPY with
an LLOQ of 50 copies/ug gDNA, one sample of 30 below it and one "<50"); subject B (no target, no
site, no infusion date, one CAR-T dose, CARCELL with a measured 0 and no LLOQ). Every expected value
is worked out by hand in the comments from the IG text quoted there or from the study rows, never
copied from cartlab's output.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import polars as pl
import pyreadstat
import pytest

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.errors import CartlabWarning
from cartlab.io import read_study
from cartlab.io.adam import adam_frames, export_adam, load_spec
from cartlab.io.adam.build import adae, iso_duration
from cartlab.io.sdtm import read_sdtm
from cartlab.io.sdtm.writer import sdtm_frames, write_sdtm

SUBJECTS = """subject_id,sex,age_years,target,infusion_date,last_followup_day,site,country
A,F,40,CD19,2021-03-01,60,Site-1,DEU
B,M,50,,,30,,
"""
DOSES = """subject_id,day,agent,dose,unit
A,-5,fludarabine,30,mg/m2
A,0,CAR-T,1000000,cells/kg
A,2,CAR-T,4000000,cells/kg
B,0,CAR-T,1000000,cells/kg
"""
OBS = """subject_id,day,param,value,value_text,unit,lloq
A,3,TEMP,39.0,,C,
A,4,TEMP,38.5,,C,
A,5,TEMP,37.0,,C,
A,6,ICE,8,,,
A,7,ICE,10,,,
A,1,CARCOPY,100,,copies/ug gDNA,50
A,7,CARCOPY,5000,,copies/ug gDNA,50
A,14,CARCOPY,800,,copies/ug gDNA,50
A,28,CARCOPY,30,,copies/ug gDNA,50
A,35,CARCOPY,,<50,copies/ug gDNA,50
B,1,CARCELL,5,,cells/uL,
B,7,CARCELL,40,,cells/uL,
B,14,CARCELL,10,,cells/uL,
B,21,CARCELL,0,,cells/uL,
"""


def _study_dir(root: Path, subjects: str = SUBJECTS) -> Path:
    d = root / "study"
    d.mkdir()
    (d / "subjects.csv").write_text(subjects, encoding="utf-8")
    (d / "doses.csv").write_text(DOSES, encoding="utf-8")
    (d / "observations.csv").write_text(OBS, encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return read_study(_study_dir(tmp_path_factory.mktemp("s33")))


@pytest.fixture(scope="module")
def frames(study):
    return adam_frames(Analysis(study, AnalysisOptions()))


def _row(df: pl.DataFrame, **where) -> dict:
    f = df
    for k, v in where.items():
        f = f.filter(pl.col(k) == v)
    assert f.height == 1, (where, f)
    return f.row(0, named=True)


# ---------------------------------------------------------------------------------------------
# 3. ADSL TRTEDT


def test_adsl_trtedt_is_the_last_car_t_fraction(frames):
    # ADaMIG ADSL: TRTEDT "Date of Last Exposure to Treatment" (Num, SAS date). A: infused 2021-03-01,
    # the CAR-T split over days 0 and 2 (fludarabine on day -5 is not CAR-T): TRTSDT = 2021-03-01,
    # TRTEDT = 2021-03-03, as days since 1960-01-01 (SAS): computed with the calendar, not cartlab.
    sas = lambda d: (d - dt.date(1960, 1, 1)).days  # noqa: E731
    adsl = frames["ADSL"]
    a, b = _row(adsl, USUBJID="A"), _row(adsl, USUBJID="B")
    assert (a["TRTSDT"], a["TRTEDT"]) == (sas(dt.date(2021, 3, 1)), sas(dt.date(2021, 3, 3)))
    assert a["TRTEDT"] == 22342  # 61 years from 1960-01-01 (15 leap days 1960..2020) + Jan 31 + Feb 28 + 2
    # B has no infusion date: no calendar, so no TRTSDT and no TRTEDT (empty, never guessed)
    assert (b["TRTSDT"], b["TRTEDT"]) == (None, None)


def test_trtedt_spec_metadata():
    v = {x.name: x for x in load_spec().datasets["ADSL"].variables}["TRTEDT"]
    assert (v.label, v.type, v.format, v.origin) == ("Date of Last Exposure to Treatment", "integer", "DATE9.", "Derived")


# ---------------------------------------------------------------------------------------------
# 4. TRTP / TRTA


def test_trtp_trta_copied_from_adsl_in_every_record_level_dataset(frames):
    # ADaMIG Table 3.3.2.1: "TRTP must match at least one value of the character planned treatment
    # variables in ADSL (e.g., TRTxxP ...)"; TRTA likewise with TRTxxA. A: planned "CD19 CAR-T"
    # (target CD19, no arm stated), actual "CD19 CAR-T" (it has a CAR-T dose row: the planned product,
    # option adam.trt01a=planned_product, session 38); B: no target and no arm -> TRTP empty, TRTA the
    # dose agent "CAR-T".
    expect = {"A": ("CD19 CAR-T", "CD19 CAR-T"), "B": (None, "CAR-T")}
    adsl = frames["ADSL"]
    for sid, (p, a) in expect.items():
        r = _row(adsl, USUBJID=sid)
        assert (r["TRT01P"], r["TRT01A"]) == (p, a)
    for name in ("ADLB", "ADVS", "ADAE", "ADRS", "ADTTE", "ADPC", "ADPP"):
        df = frames[name]
        assert {"TRTP", "TRTA"} <= set(df.columns), name
        got = {(u, p, a) for u, p, a in df.select("USUBJID", "TRTP", "TRTA").unique().iter_rows()}
        assert got == {(u, *expect[u]) for u in df["USUBJID"].unique()}, name


# ---------------------------------------------------------------------------------------------
# 5. ADAE AEDECOD, AEBODSYS, TRTEMFL, AESEQ origin


def test_adae_coded_terms_and_treatment_emergence(frames):
    # A: fever >= 38 on days 3-4 = CRS grade 1 (ASTCT 2019) starting day 3; ICE 8 on day 6 = ICANS
    # grade 1 (ICE 7-9). MedDRA PT / primary SOC as written in adam_terms.yaml: CRS -> Immune system
    # disorders, ICANS -> Nervous system disorders. OCCDS TRTEMFL: "If ADSL.TRTSDT<=ASTDT ... then
    # TRTEMFL='Y'": both start after day 0 -> Y.
    ae = frames["ADAE"]
    crs = _row(ae, AETERM="Cytokine release syndrome")
    icans = _row(ae, AETERM="Immune effector cell-associated neurotoxicity syndrome")
    assert (crs["AEDECOD"], crs["AEBODSYS"], crs["TRTEMFL"], crs["ASTRLDY"]) == (
        "Cytokine release syndrome", "Immune system disorders", "Y", 3.0)
    assert (icans["AEDECOD"], icans["AEBODSYS"], icans["TRTEMFL"], icans["ASTRLDY"]) == (
        "Immune effector cell-associated neurotoxicity syndrome", "Nervous system disorders", "Y", 6.0)


class _Episodes:
    """The two things the ADAE builder reads from an analysis: the study and its adae_toxicity table
    (hand-written here, so that a start before the infusion and an unknown start can be tested)."""

    def __init__(self, study, table):
        self.study, self._t = study, table

    def table(self, name):
        assert name == "adae_toxicity"
        return self._t

    def has(self, name):
        return name == "adae_toxicity"


def test_trtemfl_before_infusion_is_n_and_unknown_start_is_empty(study):
    from cartlab.io.adam.build import _study_dates, _treatments

    ep = pl.DataFrame({
        "STUDYID": ["s"] * 3, "USUBJID": ["A", "A", "A"], "AESEQ": [1, 2, 3],
        "AETERM": ["Cytokine release syndrome", "Immune effector cell-associated hematotoxicity, early (days 0-30)",
                   "Cytokine release syndrome"],
        "ASTDY": [-1, 0, None], "AENDY": [0, 5, None], "ADURN": [2, 6, None], "ADURU": ["DAYS"] * 3,
        "ATOXGR": [1, 2, 1], "ATOXGRS": ["ASTCT 2019"] * 3, "RULE": ["r"] * 3, "RULESTAT": ["verified"] * 3,
        "REASON": ["x"] * 3, "EVIDENCE": [[], [], []]}, schema_overrides={"EVIDENCE": pl.List(pl.String)})
    out = adae(_Episodes(study, ep), _treatments(study, _study_dates(study)))
    # day -1 is before the infusion (TRTSDT <= ASTDT fails) -> N; day 0 is the infusion day
    # (TRTSDT = ASTDT) -> Y; no start -> empty
    assert out["TRTEMFL"].to_list() == ["N", "Y", None]
    # ICAHT has no row in the term table: not coded, AEDECOD / AEBODSYS empty (nothing guessed)
    assert out["AEDECOD"].to_list() == ["Cytokine release syndrome", None, "Cytokine release syndrome"]
    assert out["AEBODSYS"].to_list()[1] is None


def test_adae_spec_metadata():
    ds = load_spec().datasets["ADAE"]
    v = {x.name: x for x in ds.variables}
    # AESEQ has no SDTM AE source: cartlab numbers the episodes itself (origin Derived, not Predecessor)
    assert v["AESEQ"].origin == "Derived" and "not copied from an SDTM AE.AESEQ" in v["AESEQ"].derivation
    assert (v["AEDECOD"].label, v["AEBODSYS"].label, v["TRTEMFL"].label) == (
        "Dictionary-Derived Term", "Body System or Organ Class", "Treatment Emergent Analysis Flag")
    # the MedDRA PT/SOC rows were not checked against a MedDRA release: unverified
    assert (v["AEDECOD"].status, v["AEBODSYS"].status, v["TRTEMFL"].status) == ("unverified", "unverified", "verified")


# ---------------------------------------------------------------------------------------------
# 1 + 7. ADPC PARAM and AVALC of BLQ samples


def test_adpc_param_with_unit_and_blq_avalc(frames):
    pc = frames["ADPC"]
    # PARAM = dictionary label + AVALU (params_v1.yaml: CARCOPY "CAR transgene copies by qPCR in
    # blood", canonical unit "copies/ug gDNA"; CARCELL "CAR+ cells by flow cytometry in blood", cells/uL)
    assert set(pc.select("PARAMCD", "PARAM").unique().iter_rows()) == {
        ("CARCOPY", "CAR transgene copies by qPCR in blood (copies/ug gDNA)"),
        ("CARCELL", "CAR+ cells by flow cytometry in blood (cells/uL)")}
    # A day 28: 30 < LLOQ 50 -> BLQ; written as a censored value is ("<50"), not left empty
    d28 = _row(pc, USUBJID="A", ARELDY=28.0)
    assert (d28["BLQFL"], d28["AVALC"], d28["AVAL"]) == ("Y", "<50", 30.0)
    # A day 35: the result was "<50" -> "<50"
    assert _row(pc, USUBJID="A", ARELDY=35.0)["AVALC"] == "<50"
    # B day 21: a measured 0 without an LLOQ is BLQ (study contract) and no bound is known -> "BLQ"
    d21 = _row(pc, USUBJID="B", ARELDY=21.0)
    assert (d21["BLQFL"], d21["AVALC"]) == ("Y", "BLQ")
    # quantified samples keep AVALC empty (numeric result in AVAL)
    assert _row(pc, USUBJID="A", ARELDY=7.0)["AVALC"] is None
    # no BLQ record is left without AVALC
    assert pc.filter((pl.col("BLQFL") == "Y") & pl.col("AVALC").is_null()).height == 0


# ---------------------------------------------------------------------------------------------
# 2. ADPP PARAM with unit, PPSTINT/PPENINT ISO 8601


def test_adpp_param_units_and_iso_intervals(frames):
    pp = frames["ADPP"].filter(pl.col("USUBJID") == "A")
    got = dict(pp.select("PARAMCD", "PARAM").iter_rows())
    # PPTEST names (SDTMIG PP examples "Max Conc", "Time of CMAX", "AUC All") + unit: concentration
    # in copies/ug gDNA, time in days (the day axis), AUC = days x concentration, lambda z per day
    assert got["CMAX"] == "Max Conc (copies/ug gDNA)"
    assert got["TMAX"] == "Time of CMAX (days)"
    assert got["AUCALL"] == "AUC All (days*copies/ug gDNA)"
    assert got["LAMZ"] == "Lambda z (1/days)"
    assert got["R2ADJ"] == "R Squared Adjusted"  # unitless: the name alone
    # AUCINT over the default window 0-28 days: ISO 8601 durations from the infusion
    auc = _row(pp, PARAMCD="AUCINT")
    assert (auc["PPSTINT"], auc["PPENINT"]) == ("P0D", "P28D")
    assert pp.filter(pl.col("PARAMCD") != "AUCINT")["PPSTINT"].null_count() == pp.height - 1


def test_adpp_mixed_analytes_are_named_in_a_note(study, tmp_path):
    # A is measured as CARCOPY, B as CARCELL: CMAX has PARAM "Max Conc (copies/ug gDNA)" for A and
    # "Max Conc (cells/uL)" for B, two PARAMs for one PARAMCD (ADaMIG: "a one-to-one mapping between
    # the two variables"): the export says so
    res = export_adam(Analysis(study, AnalysisOptions()), tmp_path / "adam", formats=("csv",))
    notes = [n for n in res["notes"] if n.startswith("ADPP:")]
    assert len(notes) == 1 and "CMAX" in notes[0] and "one PARAM per PARAMCD" in notes[0]


@pytest.mark.parametrize(("days", "iso"), [
    (0.0, "P0D"), (28.0, "P28D"), (0.5, "PT12H"), (1.25, "P1DT6H"), (1 / 48, "PT30M"), (-7.0, "-P7D"),
    (2 + 1 / 86400, "P2DT1S"), (None, None)])
def test_iso_duration(days, iso):
    # ISO 8601 PnDTnHnMnS, by hand: 0.5 d = 12 h; 1.25 d = 1 d 6 h; 1/48 d = 30 min; 1 s = 1/86400 d
    got = pl.select(iso_duration(pl.lit(days, dtype=pl.Float64))).item()
    assert got == iso


# ---------------------------------------------------------------------------------------------
# spec: every new variable has checked metadata


def test_new_variables_have_metadata():
    spec = load_spec()
    new = {"ADSL": ["TRTEDT"], "ADAE": ["TRTP", "TRTA", "AEDECOD", "AEBODSYS", "TRTEMFL"],
           "ADPC": ["TRTP", "TRTA", "PARAM"], "ADPP": ["TRTP", "TRTA"]}
    for name in ("ADLB", "ADVS", "ADRS", "ADTTE"):
        new[name] = ["TRTP", "TRTA"]
    for ds, names in new.items():
        v = {x.name: x for x in spec.datasets[ds].variables}
        for n in names:
            var = v[n]
            assert len(var.label) <= 40 and var.label.isascii(), (ds, n)
            assert var.cite in spec.citations and var.derivation.strip(), (ds, n)
    v = {x.name: x for x in spec.datasets["ADLB"].variables}
    assert (v["TRTP"].label, v["TRTA"].label) == ("Planned Treatment", "Actual Treatment")


def test_xpt_of_the_new_variables_reads_back(study, tmp_path):
    export_adam(Analysis(study, AnalysisOptions()), tmp_path / "adam", formats=("xpt",), datasets=["ADSL", "ADAE"])
    adsl, meta = pyreadstat.read_xport(str(tmp_path / "adam" / "adsl.xpt"))
    assert meta.column_names_to_labels["TRTEDT"] == "Date of Last Exposure to Treatment"
    assert meta.original_variable_types["TRTEDT"].startswith("DATE")
    a = adsl[adsl["USUBJID"] == "A"].iloc[0]
    assert a["TRTEDT"] == dt.date(2021, 3, 3)  # pyreadstat reads a DATE9. number back as a date
    ae, _ = pyreadstat.read_xport(str(tmp_path / "adam" / "adae.xpt"))
    assert set(ae["AEBODSYS"]) == {"Immune system disorders", "Nervous system disorders"}


# ---------------------------------------------------------------------------------------------
# 6. SDTM DM: SITEID, COUNTRY, ARM ..., and the round trip


def test_dm_site_country_arms_and_warning(study):
    # SDTMIG 3.4 DM: SITEID Req, COUNTRY Req, ARMCD/ARM/ACTARMCD/ACTARM; ARMNRS when ARM is null.
    # A: site Site-1, country DEU, target CD19 -> ARM "CD19 CAR-T", ARMCD "CD19CART" (letters and
    # digits, upper case), treated (CAR-T row) -> ACTARM = ARM. B: nothing stated -> SITEID, COUNTRY,
    # ARM empty, ARMNRS "NOT ASSIGNED", and a warning naming SITEID, COUNTRY and ARM.
    with pytest.warns(CartlabWarning) as rec:
        dm = sdtm_frames(study)["DM"]
    msg = " ".join(str(w.message) for w in rec)
    assert "SITEID empty for 1 of 2" in msg and "COUNTRY empty for 1 of 2" in msg and "ARMNRS" in msg
    a, b = _row(dm, USUBJID="A"), _row(dm, USUBJID="B")
    assert (a["SITEID"], a["COUNTRY"], a["ARMCD"], a["ARM"], a["ACTARMCD"], a["ACTARM"], a["ARMNRS"]) == (
        "Site-1", "DEU", "CD19CART", "CD19 CAR-T", "CD19CART", "CD19 CAR-T", None)
    assert (b["SITEID"], b["COUNTRY"], b["ARMCD"], b["ARM"], b["ACTARM"], b["ARMNRS"]) == (
        None, None, None, None, None, "NOT ASSIGNED")


def test_dm_without_missing_required_values_does_not_warn(tmp_path):
    subj = "subject_id,sex,target,last_followup_day,site,country\nA,F,CD19,60,Site-1,DEU\n"
    d = tmp_path / "one"
    d.mkdir()
    (d / "subjects.csv").write_text(subj, encoding="utf-8")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nA,0,CAR-T,1000000,cells/kg\n", encoding="utf-8")
    study = read_study(d)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CartlabWarning)
        dm = sdtm_frames(study)["DM"]
    assert dm["SITEID"].to_list() == ["Site-1"]


@pytest.mark.parametrize("fmt", ["csv", "xpt"])
def test_dm_round_trip_keeps_extra_and_arm(study, tmp_path, fmt):
    # the SDTM reader takes DM.SITEID / ARM back; subjects.extra comes back as it was (same keys, same
    # order), and B (no target) gets no arm invented
    with pytest.warns(CartlabWarning):
        folder = write_sdtm(study, tmp_path / "sdtm", fmt)
    dm, meta = (pyreadstat.read_xport(str(folder / "dm.xpt")) if fmt == "xpt"
                else (pl.read_csv(folder / "dm.csv").to_pandas(), None))
    assert list(dm["SITEID"].fillna(""))[:1] == ["Site-1"]
    if meta is not None:  # SDTMIG 3.4 DM labels
        labels = meta.column_names_to_labels
        assert (labels["SITEID"], labels["ARMNRS"], labels["COUNTRY"]) == (
            "Study Site Identifier", "Reason Arm and/or Actual Arm is Null", "Country")
    back = read_sdtm(folder)
    assert back.subjects.sort("subject_id")["extra"].to_list() == study.subjects.sort("subject_id")["extra"].to_list()


def test_round_trip_keeps_extra_key_order_and_a_stated_arm(tmp_path):
    # extra keys in another order than the DM variables (country before site) and a stated arm:
    # the JSON text comes back byte for byte
    subj = ('subject_id,sex,target,last_followup_day,country,site,arm\n'
            'A,F,CD19,60,DEU,Site-1,CD19 CAR-T 1x10^6 cells/kg\n')
    d = tmp_path / "st"
    d.mkdir()
    (d / "subjects.csv").write_text(subj, encoding="utf-8")
    (d / "doses.csv").write_text("subject_id,day,agent,dose,unit\nA,0,CAR-T,1000000,cells/kg\n", encoding="utf-8")
    study = read_study(d)
    extra = study.subjects["extra"].to_list()
    assert list(json.loads(extra[0])) == ["country", "site", "arm"]
    dm = sdtm_frames(study)["DM"]
    # a stated arm wins over the target; ARMCD = upper-case letters and digits, cut to 20 characters
    assert dm.row(0, named=True)["ARM"] == "CD19 CAR-T 1x10^6 cells/kg"
    assert dm.row(0, named=True)["ARMCD"] == "CD19CART1X106CELLSKG"
    back = read_sdtm(write_sdtm(study, tmp_path / "sdtm", "csv"))
    assert back.subjects["extra"].to_list() == extra


def test_third_party_dm_country_is_kept_and_written_back(tmp_path):
    """A third-party DM with SITEID 08 and COUNTRY CHN: read_sdtm keeps both in ``extra`` (site,
    country) and write_sdtm writes them to DM.SITEID / DM.COUNTRY again (SDTMIG 3.4 DM: both Req)."""
    import json

    import polars as pl

    from cartlab.io.sdtm import read_sdtm, write_sdtm

    src = tmp_path / "in"
    src.mkdir()
    (src / "dm.csv").write_text("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,SITEID,COUNTRY,AGE,AGEU,SEX\n"
                                "S,DM,P1,2021-05-10,2021-05-10,08,CHN,40,YEARS,M\n", encoding="utf-8")
    (src / "ex.csv").write_text("STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n"
                                "S,EX,P1,1,CAR-T,1000000,CELLS/KG,2021-05-10\n", encoding="utf-8")
    s = read_sdtm(src)
    extra = json.loads(s.subjects["extra"][0])
    assert (extra["site"], extra["country"]) == ("08", "CHN")
    out = tmp_path / "out"
    write_sdtm(s, out)
    dm = pl.read_csv(out / "dm.csv", infer_schema_length=0)
    assert (dm["SITEID"][0], dm["COUNTRY"][0]) == ("08", "CHN")
