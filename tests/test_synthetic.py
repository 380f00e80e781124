"""The seeded synthetic cohort generator (``cartlab.datasets.synthetic``)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml

from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.units import conversion

N = 20
SEED = 2
FILES = ("subjects", "doses", "observations", "interventions", "events")
REQUIRED = {
    "subjects": {"subject_id"},
    "doses": {"subject_id", "day", "agent", "dose", "unit"},
    "observations": {"subject_id", "day", "datetime", "param", "value", "value_text", "unit"},
    "interventions": {"subject_id", "start_day", "category"},
    "events": {"subject_id", "day", "event"},
}
PARAMS = yaml.safe_load(
    (Path(__file__).resolve().parents[1] / "src/cartlab/io/params_v1.yaml").read_text(encoding="utf-8")
)["params"]


def _read(folder: Path, name: str) -> pl.DataFrame:
    return pl.read_csv(folder / f"{name}.csv", infer_schema=False)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    return synthetic_cohort(N, seed=SEED, out_dir=tmp_path_factory.mktemp("syn"))


@pytest.fixture(scope="module")
def obs(cohort: Path) -> pl.DataFrame:
    return pl.read_csv(
        cohort / "observations.csv",
        schema_overrides={c: pl.Float64 for c in ("day", "value", "lln", "uln", "lloq")},
        infer_schema=False,
    )


def test_same_seed_gives_identical_bytes(cohort: Path, tmp_path: Path) -> None:
    again = synthetic_cohort(N, seed=SEED, out_dir=tmp_path / "again")
    for name in FILES:
        assert (cohort / f"{name}.csv").read_bytes() == (again / f"{name}.csv").read_bytes(), name


def test_different_seed_differs(cohort: Path, tmp_path: Path) -> None:
    other = synthetic_cohort(N, seed=SEED + 1, out_dir=tmp_path / "other")
    assert (cohort / "observations.csv").read_bytes() != (other / "observations.csv").read_bytes()
    assert (cohort / "subjects.csv").read_bytes() != (other / "subjects.csv").read_bytes()


def test_required_columns_and_source_label(cohort: Path) -> None:
    for name in FILES:
        df = _read(cohort, name)
        assert df.height > 0, name
        assert REQUIRED[name] <= set(df.columns), name
        assert df["source"].unique().to_list() == ["synthetic"], name


def test_row_counts(cohort: Path, obs: pl.DataFrame) -> None:
    subjects = _read(cohort, "subjects")
    assert subjects.height == N
    assert subjects["subject_id"].n_unique() == N
    per_subject = obs.group_by("subject_id").len()["len"]
    assert 1300 <= per_subject.mean() <= 1700
    assert 1300 <= per_subject.median() <= 1700
    assert set(obs["subject_id"]) <= set(subjects["subject_id"])


def test_subjects_are_plausible(cohort: Path) -> None:
    s = pl.read_csv(cohort / "subjects.csv")
    assert set(s["target"]) == {"CD7", "CD19"}
    assert set(s["disease"]) <= {"AML", "T-ALL", "T-LBL", "B-ALL", "LBCL", "FL", "MCL"}
    assert (s["age_years"] < 12).any() and (s["age_years"] >= 18).any()
    bmi = s["weight_kg"] / (s["height_cm"] / 100) ** 2
    assert bmi.min() > 10 and bmi.max() < 45
    assert s["infusion_date"].drop_nulls().len() >= 1


def test_params_known_and_several_unit_spellings(obs: pl.DataFrame) -> None:
    assert set(obs["param"]) <= set(PARAMS)
    spellings = obs.group_by("param").agg(pl.col("unit").fill_null("").unique())
    by_param = dict(zip(spellings["param"], spellings["unit"]))
    for code in ("NEUT", "TEMP", "HGB", "CRP", "BILI"):
        assert len(by_param[code]) >= 2, code
    for code, units in by_param.items():
        p = PARAMS[code]
        allowed = {str(p["unit"]), *map(str, p.get("accepts", ()))}
        if "empty_unit" in p or p["unit"] == "":
            allowed.add("")
        assert set(units) <= allowed, (code, units)


def test_values_in_plausible_range_after_conversion(obs: pl.DataFrame) -> None:
    pairs = obs.filter(pl.col("value").is_not_null()).select("param", pl.col("unit").fill_null("")).unique()
    for code, unit in pairs.iter_rows():
        p = PARAMS[code]
        rows = obs.filter((pl.col("param") == code) & (pl.col("unit").fill_null("") == unit))
        values = rows["value"].drop_nulls()
        if p["unit"] == "":
            canon = values
        else:
            c = conversion(unit or p["empty_unit"], str(p["unit"]), p.get("molar_mass_g_mol"),
                           p.get("equivalents_per_mol"))
            canon = values * c.scale + c.offset
        lo, hi = p["plausible"]
        assert canon.min() >= lo - 1e-9 and canon.max() <= hi + 1e-9, (code, unit, canon.min(), canon.max())
    both = obs.filter(pl.col("lln").is_not_null() & pl.col("uln").is_not_null())
    assert both.height > 0
    assert (both["lln"] <= both["uln"]).all()


def test_value_text_rows(obs: pl.DataFrame) -> None:
    assert (obs["value"].is_not_null() | obs["value_text"].is_not_null()).all()
    loc = obs.filter(pl.col("param") == "LOC")
    assert set(loc["value_text"]) <= set(PARAMS["LOC"]["text_values"])
    blq = obs.filter(pl.col("value_text").str.starts_with("<"))
    assert blq.height > 0 and set(blq["param"]) == {"CARCOPY"}
    assert blq["lloq"].is_not_null().all()
    limits = blq["value_text"].str.slice(1).cast(pl.Float64)
    assert (limits == blq["lloq"]).all()
    assert (blq["day"] < 0).any()  # pre-infusion samples are below the LLOQ


def test_datetime_rows_are_anchored(cohort: Path, obs: pl.DataFrame) -> None:
    subjects = pl.read_csv(cohort / "subjects.csv", infer_schema=False)
    anchored = set(subjects.filter(pl.col("infusion_date").is_not_null())["subject_id"])
    dt_rows = obs.filter(pl.col("day").is_null())
    assert dt_rows.height > 0
    assert dt_rows["datetime"].is_not_null().all()
    assert set(dt_rows["subject_id"]) <= anchored
    with_time = dt_rows.filter(pl.col("datetime").str.contains("T"))
    assert with_time.height > 0
    assert not with_time["datetime"].str.ends_with("T00:00:00").all()
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d(T\d\d:\d\d:\d\d)?", x) for x in dt_rows["datetime"])
    # every row gives day or datetime, never both
    assert (obs["day"].is_null() != obs["datetime"].is_null()).all()


def test_doses_interventions_events_vocabulary(cohort: Path) -> None:
    doses = pl.read_csv(cohort / "doses.csv")
    assert {"CAR-T", "fludarabine", "cyclophosphamide"} <= set(doses["agent"])
    assert set(doses["unit"]) <= {"cells/kg", "cells", "mg/m2", "mg", "mg/kg"}
    car = doses.filter((pl.col("agent") == "CAR-T") & (pl.col("unit") == "cells/kg"))
    totals = car.group_by("subject_id").agg(pl.col("dose").sum())["dose"]
    assert totals.min() >= 1e6 and totals.max() <= 1e7
    itv = pl.read_csv(cohort / "interventions.csv", infer_schema=False)
    assert set(itv["category"]) <= {
        "vasopressor", "oxygen", "tocilizumab", "corticosteroid", "antipyretic", "anakinra",
        "platelet_transfusion", "rbc_transfusion", "gcsf", "other",
    }
    assert itv.filter(pl.col("category") == "oxygen")["o2_device"].is_not_null().all()
    assert set(itv["indication"].drop_nulls()) <= {"CRS", "ICANS", "infection", "other"}
    events = pl.read_csv(cohort / "events.csv", infer_schema=False)
    assert set(events["event"]) <= {
        "seizure", "seizure_life_threatening", "motor_weakness", "cerebral_edema_focal",
        "cerebral_edema_diffuse", "extramedullary_disease", "infection", "allo_hsct", "relapse",
        "new_therapy", "death",
    }


def test_crs_rows_are_coherent(cohort: Path, obs: pl.DataFrame) -> None:
    """A vasopressor day for CRS has hypotension; tocilizumab follows a fever."""
    itv = pl.read_csv(cohort / "interventions.csv")
    temp = obs.filter((pl.col("param") == "TEMP") & pl.col("day").is_not_null()).with_columns(
        pl.when(pl.col("unit") == "F")
        .then((pl.col("value") - 32) / 1.8)
        .otherwise(pl.col("value"))
        .alias("c")
    )
    sbp = obs.filter((pl.col("param") == "SYSBP") & pl.col("day").is_not_null())
    pressors = itv.filter((pl.col("category") == "vasopressor") & (pl.col("indication") == "CRS"))
    for sid, start in pressors.select("subject_id", "start_day").iter_rows():
        day = sbp.filter((pl.col("subject_id") == sid) & (pl.col("day").floor() == start))
        if day.height:
            assert day["value"].min() < 90
    toci = (
        itv.filter(pl.col("category") == "tocilizumab")
        .group_by("subject_id")
        .agg(pl.col("start_day").min())
    )
    assert toci.height > 0
    for sid, start in toci.iter_rows():
        before = temp.filter((pl.col("subject_id") == sid) & (pl.col("day") < start + 1))
        if before.height:
            assert before["c"].max() >= 38.0


def test_reads_back_with_cartlab_io(cohort: Path) -> None:
    io = pytest.importorskip("cartlab.io")
    study = io.read_study(cohort)
    assert study.subjects.height == N
    assert study.observations.height == pl.read_csv(cohort / "observations.csv", infer_schema=False).height


def test_parquet_has_same_columns(cohort: Path, tmp_path: Path) -> None:
    pq = synthetic_cohort(N, seed=SEED, out_dir=tmp_path / "pq", fmt="parquet")
    for name in FILES:
        a = pl.read_parquet(pq / f"{name}.parquet")
        b = pl.read_csv(cohort / f"{name}.csv", schema=a.schema)
        assert a.columns == b.columns, name
        assert a.equals(b), name


def test_default_out_dir_and_arguments(tmp_path: Path) -> None:
    folder = synthetic_cohort(2, seed=0, days=(-3, 10))
    try:
        assert folder.is_dir() and (folder / "subjects.csv").exists()
        days = pl.read_csv(folder / "observations.csv", infer_schema=False)["day"].drop_nulls().cast(pl.Float64)
    finally:
        shutil.rmtree(folder)
    assert days.min() >= -3 and days.max() < 11
    with pytest.raises(ValueError):
        synthetic_cohort(2, fmt="xlsx", out_dir=tmp_path)
    with pytest.raises(ValueError):
        synthetic_cohort(2, days=(1, 10), out_dir=tmp_path)
    with pytest.raises(ValueError):
        synthetic_cohort(0, out_dir=tmp_path)
