"""ADaM export (cartlab.io.adam): XPT v5 read back with pyreadstat, CSV = XPT, define table, CDISC days.

Expected numbers are worked by hand in the comments (CDISC study day: day 1 = infusion day, no day 0;
SAS dates: days since 1960-01-01).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from pathlib import Path

import polars as pl
import pyreadstat
import pytest
import yaml

from cartlab.analyze import Analysis, AnalysisOptions
from cartlab.datasets import seed_case
from cartlab.errors import InputError
from cartlab.io.adam import DATASETS, export_adam, load_spec
from cartlab.io.adam.build import evidence_text
from cartlab.io.adam.write import ascii_text

SPEC = load_spec()
READSTAT_TYPE = {"text": "string", "integer": "double", "float": "double"}


@pytest.fixture(scope="module")
def seed_analysis():
    return Analysis(seed_case(), AnalysisOptions())


@pytest.fixture(scope="module")
def seed_out(seed_analysis, tmp_path_factory):
    out = tmp_path_factory.mktemp("adam_seed") / "adam"
    result = export_adam(seed_analysis, out, formats=("xpt", "csv", "parquet"))
    return out, result


@pytest.fixture(scope="module")
def synthetic_analysis(tmp_path_factory):
    from cartlab.datasets.synthetic import synthetic_cohort
    from cartlab.io import read_study

    folder = synthetic_cohort(20, seed=3, out_dir=tmp_path_factory.mktemp("syn20"))
    return Analysis(read_study(folder), AnalysisOptions())


@pytest.fixture(scope="module")
def synthetic_out(synthetic_analysis, tmp_path_factory):
    out = tmp_path_factory.mktemp("adam_syn") / "adam"
    return out, export_adam(synthetic_analysis, out)


def _expected_rows(analysis) -> dict[str, int]:
    """Row counts from the analysis' own tables (ADVS: the study's vital-sign observations; ADLB: the
    graded adlb rows, then the lab observations of parameters no CTCAE term grades, review 40 B2)."""
    vitals = {"TEMP", "SYSBP", "DIABP", "HR", "OXYSAT", "RESP", "WEIGHT", "HEIGHT"}  # params_v1.yaml group: vital
    return {"ADSL": analysis.study.subjects.height, "ADLB": analysis.table("adlb").height + _ungraded(analysis),
            "ADVS": analysis.study.observations.filter(pl.col("param").is_in(list(vitals))).height,
            "ADAE": analysis.table("adae_toxicity").height, "ADRS": analysis.table("adrs").height,
            # session 37: a parameter not defined for a subject (no CNSR) has no ADTTE record
            "ADTTE": analysis.table("adtte").filter(pl.col("CNSR").is_not_null()).height, "ADPC": analysis.table("adpc").height,
            "ADPP": analysis.table("adpp").height,
            # session 44: a DOSE record per dose row, TDOSE and TNDOSE per subject, agent and unit
            "ADEX": analysis.study.doses.height + 2 * analysis.study.doses.select("subject_id", "agent", "unit").n_unique()}


def _ungraded(analysis) -> int:
    """Lab observations (dictionary groups hematology, chemistry, coagulation, cytokine) with a value
    or a censored result, of parameters absent from the graded adlb table (option adam.adlb_params=all)."""
    labs = {"WBC", "NEUT", "LYM", "MONO", "HGB", "PLAT", "PBBLAST", "CRP", "FERRITIN", "ALT", "AST", "ALP", "GGT", "LDH",
            "BILI", "CREAT", "K", "SODIUM", "ALB", "CA", "CACORR", "CAION", "MG", "GLUC", "PHOS", "URATE", "TRIG", "CHOL",
            "CK", "LIPASE", "AMYLASE", "IL6", "IL10", "IFNG", "TNFA", "IL2RA", "FIBRINO", "INR", "APTT", "DDIMER"}
    obs = analysis.study.observations
    kept = pl.col("value").is_not_null()
    if "censor" in obs.columns:
        kept = kept | pl.col("censor").is_in(["<", "<=", ">", ">="])
    graded = set(analysis.table("adlb")["param"].to_list())
    return obs.filter(pl.col("param").is_in(sorted(labs - graded)) & kept).height


def _read_xpt(path: Path, dates: bool = False):
    return pyreadstat.read_xport(str(path), disable_datetime_conversion=not dates)


def _check_xpt_files(out: Path, analysis) -> None:
    expected = _expected_rows(analysis)
    for name in DATASETS:
        ds = SPEC.datasets[name]
        _, meta = _read_xpt(out / f"{name.lower()}.xpt")
        assert meta.table_name == name and meta.file_label == ds.label
        assert meta.column_names == ds.names()
        assert meta.column_labels == [v.label for v in ds.variables]
        assert meta.readstat_variable_types == {v.name: READSTAT_TYPE[v.type] for v in ds.variables}
        assert meta.number_rows == expected[name], name
        assert all(len(c) <= 8 and c == c.upper() for c in meta.column_names)
        assert all(len(lab) <= 40 for lab in meta.column_labels)
        assert all(w <= 200 for w in meta.variable_storage_width.values())
        formats = {v.name: v.format for v in ds.variables if v.format}
        assert {k: v for k, v in meta.original_variable_types.items() if k in formats} == formats


def test_seed_xpt_read_back_names_labels_types_rows(seed_out, seed_analysis):
    out, result = seed_out
    _check_xpt_files(out, seed_analysis)
    assert result["datasets"] == _expected_rows(seed_analysis)


def test_synthetic_xpt_read_back_names_labels_types_rows(synthetic_out, synthetic_analysis):
    _check_xpt_files(synthetic_out[0], synthetic_analysis)


@pytest.mark.parametrize("which", ["seed", "synthetic"])
def test_adlb_grades_equal_the_analysis_row_for_row(which, request):
    out, _ = request.getfixturevalue(f"{which}_out")
    adlb = request.getfixturevalue(f"{which}_analysis").table("adlb")
    df, _ = _read_xpt(out / "adlb.xpt")
    df = df.head(adlb.height)  # the graded rows come first, unchanged (review 40 B2: ungraded labs after them)
    # XPT has no missing text: a missing grade reads back as ""
    want = ["" if g is None else str(g) for g in adlb["ATOXGR"].to_list()]
    assert df["ATOXGR"].tolist() == want
    assert df["BTOXGR"].tolist() == ["" if g is None else str(g) for g in adlb["BTOXGR"].to_list()]
    assert df["AVAL"].tolist() == pytest.approx(adlb["AVAL"].to_list(), rel=1e-12, nan_ok=True)
    assert df["ARELDY"].tolist() == pytest.approx(adlb["day"].to_list(), rel=1e-14)  # 15 significant digits (s38 B3)


def test_adae_grades_scale_and_rule_equal_the_analysis(synthetic_out, synthetic_analysis):
    t = synthetic_analysis.table("adae_toxicity")
    df, _ = _read_xpt(synthetic_out[0] / "adae.xpt")
    assert df["ATOXGRN"].tolist() == pytest.approx([float(g) for g in t["ATOXGR"].to_list()])
    assert df["ATOXGRS"].tolist() == t["ATOXGRS"].to_list()
    assert df["RULE"].tolist() == t["RULE"].to_list()
    assert set(df["ATOXGRS"]) == {"ASTCT 2019", "EHA/EBMT 2023 ICAHT"}


def test_seed_study_days_by_hand(seed_out):
    out, _ = seed_out
    df, _ = _read_xpt(out / "adlb.xpt")
    # by hand: infusion day 0 is study day 1, day 14 is day 15, day -6 stays -6 (no day 0)
    pairs = {(r, a) for r, a in zip(df["ARELDY"], df["ADY"])}
    assert (0.0, 1.0) in pairs and (14.0, 15.0) in pairs and (-6.0, -6.0) in pairs
    adae, _ = _read_xpt(out / "adae.xpt")
    # seed CRS episode: days 3-14 after infusion -> study days 4-15
    crs = adae[adae["AETERM"] == "Cytokine release syndrome"].iloc[0]
    assert (crs["ASTRLDY"], crs["AENRLDY"], crs["ASTDY"], crs["AENDY"]) == (3.0, 14.0, 4.0, 15.0)


@pytest.mark.parametrize("which", ["seed", "synthetic"])
def test_ady_is_never_zero(which, request):
    out, _ = request.getfixturevalue(f"{which}_out")
    seen = 0
    for name in DATASETS:
        df, _ = _read_xpt(out / f"{name.lower()}.xpt")
        for col in ("ADY", "ASTDY", "AENDY"):
            if col in df:
                vals = df[col].dropna()
                seen += len(vals)
                assert (vals != 0).all(), (name, col)
                rel = df["ARELDY" if col == "ADY" else col.replace("DY", "RLDY")].dropna()
                # the study day is floor(relative day) + 1 from the infusion day on
                assert all((a == math.floor(r) + 1) if r >= 0 else (a == math.floor(r)) for a, r in zip(vals, rel))
    assert seen > 0


def test_seed_dates_are_empty_synthetic_has_one_dated_subject(seed_out, synthetic_out):
    """The seed gives days only: every SAS date is missing (documented). The synthetic cohort
    (n=20, seed=3) gives one subject an infusion_date (SYN-0005, 2022-05-13)."""
    adsl, _ = _read_xpt(seed_out[0] / "adsl.xpt")
    assert adsl["TRTSDT"].isna().all() and adsl["TRTSDTM"].isna().all()
    assert _read_xpt(seed_out[0] / "adlb.xpt")[0]["ADT"].isna().all()
    adsl, _ = _read_xpt(synthetic_out[0] / "adsl.xpt")
    # by hand: 1960-01-01 -> 2022-01-01 = 62 * 365 + 16 leap days = 22646; + 31+28+31+30 (Jan-Apr) + 12 = 22778
    assert adsl.loc[adsl["TRTSDT"].notna(), ["USUBJID", "TRTSDT"]].values.tolist() == [["SYN-0005", 22778.0]]
    adlb, _ = _read_xpt(synthetic_out[0] / "adlb.xpt")
    dated = adlb[adlb["ADT"].notna()]
    assert set(dated["USUBJID"]) == {"SYN-0005"}
    assert (dated["ADT"] == 22778 + dated["ARELDY"].apply(math.floor)).all()
    assert len(dated) == (adlb["USUBJID"] == "SYN-0005").sum()


def test_real_infusion_date_gives_sas_dates(tmp_path):
    s = seed_case()
    subjects = s.subjects.with_columns(pl.lit("2021-03-01").alias("infusion_date"),
                                       pl.lit("2021-03-01T10:30:00").alias("infusion_datetime"))
    a = Analysis(dataclasses.replace(s, subjects=subjects), AnalysisOptions())
    export_adam(a, tmp_path / "o", datasets=["ADSL", "ADLB", "ADAE"])
    adsl, meta = _read_xpt(tmp_path / "o" / "adsl.xpt")
    # by hand: 1960-01-01 -> 2021-01-01 = 61 * 365 + 16 leap days (1960 ... 2020) = 22281; + 31 + 28 = 22340
    assert adsl["TRTSDT"].tolist() == [22340.0]
    assert adsl["TRTSDTM"].tolist() == [22340 * 86400 + 10.5 * 3600]
    assert meta.original_variable_types["TRTSDT"] == "DATE9."
    assert meta.original_variable_types["TRTSDTM"] == "DATETIME20."
    adlb, _ = _read_xpt(tmp_path / "o" / "adlb.xpt")
    assert set(adlb.loc[adlb["ARELDY"] == 14.0, "ADT"]) == {22354.0}  # 22340 + 14
    shown, _ = _read_xpt(tmp_path / "o" / "adsl.xpt", dates=True)
    assert shown["TRTSDT"].iloc[0] == dt.date(2021, 3, 1)


def _same(a, b) -> bool:
    if a is None or (isinstance(a, float) and math.isnan(a)) or a == "":
        return b is None or (isinstance(b, float) and math.isnan(b)) or b == ""
    if isinstance(a, float) or isinstance(b, float):
        return b is not None and a == pytest.approx(float(b), rel=1e-12)
    return str(a) == str(b)


@pytest.mark.parametrize("which", ["seed", "synthetic"])
def test_csv_and_xpt_hold_the_same_values(which, request):
    out, _ = request.getfixturevalue(f"{which}_out")
    for name in DATASETS:
        ds = SPEC.datasets[name]
        df, _ = _read_xpt(out / f"{name.lower()}.xpt")
        csv = pl.read_csv(out / f"{name.lower()}.csv", infer_schema=False)
        assert csv.columns == ds.names() and csv.height == len(df)
        for v in ds.variables:
            got = csv[v.name].to_list()
            if v.type != "text":
                got = [None if x is None else float(x) for x in got]
            bad = [(i, x, y) for i, (x, y) in enumerate(zip(df[v.name].tolist(), got)) if not _same(x, y)]
            assert not bad, (name, v.name, bad[:3])


def test_parquet_equals_csv(seed_out):
    out, _ = seed_out
    for name in DATASETS:
        p = pl.read_parquet(out / f"{name.lower()}.parquet")
        c = pl.read_csv(out / f"{name.lower()}.csv", schema=p.schema)
        assert p.equals(c), name


@pytest.mark.parametrize("which", ["seed", "synthetic"])
def test_define_lists_every_variable_written(which, request):
    out, _ = request.getfixturevalue(f"{which}_out")
    define = pl.read_csv(out / "define.csv")
    written = {(name, c) for name in DATASETS for c in _read_xpt(out / f"{name.lower()}.xpt")[1].column_names}
    assert set(zip(define["dataset"], define["variable"])) == written
    assert set(define["origin"]) <= {"Derived", "Assigned", "Collected", "Predecessor", "Protocol"}
    atox = define.filter((pl.col("dataset") == "ADLB") & (pl.col("variable") == "ATOXGR"))["derivation"][0]
    assert "cartlab.grading.ctcae" in atox and "RULE" in atox


def test_define_xml_skeleton(seed_out):
    import xml.etree.ElementTree as ET

    out, _ = seed_out
    root = ET.parse(out / "define.xml").getroot()
    odm, deff = "{http://www.cdisc.org/ns/odm/v1.3}", "{http://www.cdisc.org/ns/def/v2.0}"
    assert root.tag == f"{odm}ODM"
    groups = root.findall(f".//{odm}ItemGroupDef")
    assert [g.get("Name") for g in groups] == list(DATASETS)
    items = {i.get("OID") for i in root.findall(f".//{odm}ItemDef")}
    refs = {r.get("ItemOID") for r in root.findall(f".//{odm}ItemRef")}
    assert refs == items and len(items) == sum(len(SPEC.datasets[n].variables) for n in DATASETS)
    methods = {m.get("OID") for m in root.findall(f".//{odm}MethodDef")}
    assert {r.get("MethodOID") for r in root.findall(f".//{odm}ItemRef") if r.get("MethodOID")} == methods
    assert all(o.get("Type") for o in root.findall(f".//{deff}Origin"))


def test_evidence_and_text_limits():
    refs = [f"observations.csv:{1000 + i}" for i in range(30)]  # 30 x 21 characters + separators > 200
    text = pl.select(evidence_text(pl.lit(pl.Series([refs]))).alias("e"))["e"][0]
    kept = text.split(" (+")[0].split("; ")
    assert len(text) <= 200 and text.endswith(f"(+{30 - len(kept)} more)") and kept == refs[:len(kept)]
    short = pl.select(evidence_text(pl.lit(pl.Series([refs[:2]]))).alias("e"))["e"][0]
    assert short == "observations.csv:1000; observations.csv:1001"
    vals = pl.select(ascii_text(pl.lit(pl.Series(["T ≥ 38 °C", "x" * 250, "naïve"]))).alias("t"))["t"].to_list()
    assert vals[0] == "T >= 38 degC" and vals[1] == "x" * 197 + "..." and vals[2] == "naive"


def test_every_shipped_variable_is_derived_and_cited():
    for ds in SPEC.datasets.values():
        for v in ds.variables:
            assert v.cite in SPEC.citations and v.status in ("verified", "unverified")
            assert SPEC.citations[v.cite].get("url") or SPEC.citations[v.cite].get("text")


def test_unknown_format_or_dataset_writes_nothing(seed_analysis, tmp_path):
    with pytest.raises(InputError, match="sas7bdat"):
        export_adam(seed_analysis, tmp_path / "a", formats=("sas7bdat",))
    with pytest.raises(InputError, match="ADXX"):
        export_adam(seed_analysis, tmp_path / "b", datasets=["ADXX"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_failure_midway_leaves_nothing(seed_analysis, tmp_path, monkeypatch):
    from cartlab.io import adam

    real = adam.write_xpt

    def fail_on_adrs(frame, ds, path):
        if ds.name == "ADRS":
            raise OSError("disk full")
        real(frame, ds, path)

    monkeypatch.setattr(adam, "write_xpt", fail_on_adrs)
    with pytest.raises(OSError):
        export_adam(seed_analysis, tmp_path / "out")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def test_user_spec_can_drop_a_variable_but_not_invent_one(seed_analysis, tmp_path):
    raw = yaml.safe_load((Path(__file__).parents[1] / "src/cartlab/io/adam/adam_spec.yaml").read_text())
    raw["datasets"]["ADSL"]["variables"] = [v for v in raw["datasets"]["ADSL"]["variables"] if v.get("name") != "HEIGHTBL"]
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(raw))
    export_adam(seed_analysis, tmp_path / "o", datasets=["ADSL"], spec=p)
    assert "HEIGHTBL" not in _read_xpt(tmp_path / "o" / "adsl.xpt")[1].column_names
    raw["datasets"]["ADSL"]["variables"].append({"name": "NEWVAR", "label": "New", "type": "text", "origin": "Derived",
                                                 "derivation": "x", "cite": "sponsor", "status": "verified"})
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(InputError, match="NEWVAR"):
        export_adam(seed_analysis, tmp_path / "o2", datasets=["ADSL"], spec=p)
    assert not (tmp_path / "o2").exists()


def test_a_second_reader_pandas_read_sas_reads_the_same_datasets(synthetic_out):
    """A second, independent XPT reader (pandas' own SAS XPORT parser, not ReadStat): the same names,
    rows and values for every dataset (the `xport` package cannot be installed here)."""
    import pandas as pd

    out = synthetic_out[0]
    for name in DATASETS:
        theirs = pd.read_sas(out / f"{name.lower()}.xpt", format="xport", encoding="utf-8")
        ours, meta = _read_xpt(out / f"{name.lower()}.xpt")
        assert list(theirs.columns) == meta.column_names, name
        assert len(theirs) == meta.number_rows, name
        for col in theirs.columns:
            a, b = theirs[col], ours[col]
            if a.dtype.kind == "f":
                # pandas reads the zero ReadStat writes as 16**-65 (5.4e-79): an absolute floor of 1e-70
                tol = (1e-12 * b.abs()).clip(lower=1e-70).fillna(0)
                assert ((a - b).abs().fillna(0) <= tol).all() and (a.isna() == b.isna()).all(), (name, col)
            else:
                assert (a.fillna("").astype(str) == b.fillna("").astype(str)).all(), (name, col)
