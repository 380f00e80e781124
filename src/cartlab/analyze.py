"""Run every available engine over a study and assemble ``subject_summary.csv``.

Engines register the summary columns they derive. A column whose engine does not exist yet is still
written (empty), and the analysis manifest says which engine will fill it, so downstream code can
rely on the full set of spec columns (``../shared/spec/study-format.md``, "Required outputs").
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cartlab import __version__
from cartlab.model import SUBJECT_SUMMARY, SUBJECT_SUMMARY_COLUMNS, Study

#: which capability derives which summary columns (for the manifest of pending columns)
PLANNED_ENGINES = {
    "grading (CRS/ICANS/ICAHT)": (
        "crs_grade_astct",
        "crs_onset_day",
        "crs_resolution_day",
        "icans_grade_astct",
        "icaht_early_grade",
        "icaht_late_grade",
    ),
    "response (ELN 2022 / ALL)": ("best_response", "best_response_day", "mrd_negative"),
    "kinetics (NCA)": ("car_cmax", "car_tmax", "car_auc_0_28", "car_tlast"),
}


@dataclass(frozen=True)
class Engine:
    """A summary engine: a pure function from a study to one row per subject."""

    name: str
    columns: tuple[str, ...]
    run: Callable[[Study], pl.DataFrame]  # returns subject_id + columns
    citation: str = ""


@dataclass
class Registry:
    engines: list[Engine] = field(default_factory=list)

    def register(self, engine: Engine) -> Engine:
        clash = set(engine.columns) & {c for e in self.engines for c in e.columns}
        if clash:
            raise ValueError(f"columns {sorted(clash)} are already derived by another engine")
        self.engines.append(engine)
        return engine


def builtin_registry() -> Registry:
    """The engines cartlab ships, each deriving its columns of ``subject_summary.csv``."""
    from cartlab.grading.crs import crs_summary
    from cartlab.grading.hematotox import icaht_summary
    from cartlab.grading.icans import icans_summary
    from cartlab.kinetics.car import kinetics_summary
    from cartlab.response.best import response_summary

    reg = Registry()
    reg.register(
        Engine(
            "ASTCT 2019 CRS",
            ("crs_grade_astct", "crs_onset_day", "crs_resolution_day"),
            crs_summary,
            "Lee DW et al., Biol Blood Marrow Transplant 2019;25:625, Table 1",
        )
    )
    reg.register(
        Engine(
            "ASTCT 2019 ICANS",
            ("icans_grade_astct",),
            icans_summary,
            "Lee DW et al., Biol Blood Marrow Transplant 2019;25:625, Table 4",
        )
    )
    reg.register(
        Engine(
            "EHA/EBMT 2023 ICAHT",
            ("icaht_early_grade", "icaht_late_grade"),
            icaht_summary,
            "Rejeski K et al., Blood 2023;142:865 (criteria/icaht_2023.yaml)",
        )
    )
    reg.register(
        Engine(
            "ELN 2022 AML / ALL response",
            ("best_response", "best_response_day", "mrd_negative"),
            response_summary,
            "Döhner H et al., Blood 2022;140:1345, Table 7; ELIANA (Maude 2018) for ALL",
        )
    )
    reg.register(
        Engine(
            "CAR-T kinetics (NCA)",
            ("car_cmax", "car_tmax", "car_auc_0_28", "car_tlast"),
            kinetics_summary,
            "PKNCA conventions (Denney et al. 2015): lin-up/log-down AUC, BLQ first/middle/last = 0/drop/0",
        )
    )
    return reg


REGISTRY = builtin_registry()


def subject_summary(study: Study, registry: Registry = REGISTRY) -> pl.DataFrame:
    """One row per subject with every spec column; columns without an engine are empty."""
    out = study.subjects.select("subject_id")
    for engine in registry.engines:
        part = engine.run(study).select("subject_id", *engine.columns)
        out = out.join(part, on="subject_id", how="left", maintain_order="left")
    missing = [c for c in SUBJECT_SUMMARY_COLUMNS if c not in out.columns]
    out = out.with_columns(pl.lit(None, dtype=SUBJECT_SUMMARY[c]).alias(c) for c in missing)
    extra = [c for c in out.columns if c not in SUBJECT_SUMMARY_COLUMNS]
    return out.select(
        *[pl.col(c).cast(SUBJECT_SUMMARY[c]) for c in SUBJECT_SUMMARY_COLUMNS], *extra
    )


def manifest(study: Study, registry: Registry = REGISTRY) -> dict:
    """What ran, on what input, and which columns are still waiting for their engine."""
    derived = {c for e in registry.engines for c in e.columns}
    pending = {
        name: [c for c in cols if c not in derived]
        for name, cols in PLANNED_ENGINES.items()
        if any(c not in derived for c in cols)
    }
    return {
        "cartlab_version": __version__,
        "study_id": study.study_id,
        "n_subjects": study.subjects.height,
        "inputs": study.sources.to_dicts(),
        "engines": [
            {"name": e.name, "columns": list(e.columns), "citation": e.citation}
            for e in registry.engines
        ],
        "pending_columns": pending,
        "note": "pending columns are present in subject_summary.csv and empty until their engine exists",
    }


def protocol_tables(study: Study, protocol) -> dict[str, pl.DataFrame]:
    """Protocol views of a study: ``dose_plan`` (planned administrations per subject from their
    weight, height and screening creatinine), ``eligibility`` (every criterion per subject),
    ``eligibility_verdict``, ``protocol_deviations`` and ``protocol_orr`` (the trial's ORR
    definition at each of its landmarks, with exact CIs)."""
    from cartlab.protocol.outcomes import protocol_orr
    from cartlab.protocol import (
        DOSE_PLAN_SCHEMA,
        eligibility_verdict,
        planned_doses,
        protocol_deviations,
        screen_eligibility,
    )

    plans = []
    for sid in study.subject_ids:
        plan, _why = planned_doses(study, protocol, sid)
        if plan is not None:
            plans.append(plan.select(pl.lit(sid).alias("subject_id"), pl.all()))
    empty = pl.DataFrame(schema={"subject_id": pl.String, **DOSE_PLAN_SCHEMA})
    elig = screen_eligibility(study, protocol)
    return {
        "dose_plan": pl.concat(plans) if plans else empty,
        "eligibility": elig,
        "eligibility_verdict": eligibility_verdict(elig),
        "protocol_deviations": protocol_deviations(study, protocol),
        "protocol_orr": protocol_orr(study, protocol),
    }


def detail_tables(study: Study) -> dict[str, pl.DataFrame]:
    """The per-row, per-day and per-episode tables behind the summary (written next to it by analyze).

    * ``adlb``: CTCAE v5 lab grades (ADLB-like: ATOXGRL/ATOXGRH/ATOXGR/BTOXGR, rule, evidence).
    * ``crs_daily`` / ``icans_daily``: ASTCT 2019 daily grades with the rule and source rows.
    * ``crs_cross_scale``: per subject, ASTCT next to Lee 2014, Penn, CARTOX and MSKCC (ranges and
      missing inputs where a scale cannot be settled); ``crs_cross_scale_pairwise`` and
      ``crs_cross_scale_summary``: the cohort concordance.
    * ``icaht`` / ``icaht_daily``: early and late ICAHT with durations, and the ANC series behind it.
    * ``count_recovery``, ``car_hematotox``, ``easix``: recovery days and pre-lymphodepletion scores.
    * ``iec_hs_flags``: the days the computable IEC-HS criteria are met (for review, not a diagnosis).
    * ``adae_toxicity``: CRS, ICANS and ICAHT episodes as one ADAE-like table.
    * ``marrow_response``: ELN 2022 (AML) / CR-CRi-NR (ALL) at each marrow, with MRD and evidence;
      ``best_response``: best overall response, time to response, relapse, duration of response;
      ``adrs``: ADaM-style ADRS (OVRLRESP per assessment, BOR per subject).
    * ``molecular_response``: log10 reduction per marker; ``antigen_loss``: target antigen on blasts.
    * ``adtte``: OS, EFS, RFS, LFS and CIR per subject (ELN 2022 Table 9); cohort ``response_rates``
      (ORR and CR/CRh/CRi with exact CIs), ``km`` (Kaplan-Meier of OS, EFS, LFS with log(-log) CIs
      and numbers at risk) and ``cumulative_incidence`` (relapse, death without relapse competing).
    * ``car_kinetics`` (NCA per subject: PKNCA-named parameters, method, warnings), ``adpc``, ``adpp``
      and ``exposure_response`` (Cmax/AUC0-28 vs response and CRS: Mann-Whitney, logistic).
    """
    from cartlab.grading.crs import crs_daily, crs_summary

    crs_d = crs_daily(study)
    crs = crs_summary(study, daily=crs_d)
    tables = _grading_tables(study, crs_d, crs)
    tables.update(_response_tables(study))
    tables.update(_kinetics_tables(study, tables["best_response"], crs))
    return tables


def _grading_tables(study: Study, crs_d: pl.DataFrame, crs: pl.DataFrame) -> dict[str, pl.DataFrame]:
    from cartlab.grading.adam import adae_toxicity
    from cartlab.grading.crs import episodes
    from cartlab.grading.crs_legacy import crs_cross_scale_cohort, organ_grades_from_adlb
    from cartlab.grading.ctcae import derive_ctcae
    from cartlab.grading.hematotox import (
        car_hematotox,
        easix,
        icaht,
        icaht_daily,
        icaht_episodes,
        iec_hs_flags,
        recovery_days,
    )
    from cartlab.grading.icans import icans_daily

    adlb = derive_ctcae(study)
    icans_d = icans_daily(study)
    cross = crs_cross_scale_cohort(study, crs, organ_grades_from_adlb(adlb))
    icaht_s = icaht(study)
    parts = [
        episodes(crs_d, "Cytokine release syndrome", "ASTCT 2019"),
        episodes(icans_d, "Immune effector cell-associated neurotoxicity syndrome", "ASTCT 2019"),
        icaht_episodes(study, graded=icaht_s),
    ]
    return {
        "adlb": adlb,
        "crs_daily": crs_d,
        "icans_daily": icans_d,
        "crs_cross_scale": cross["subjects"],
        "crs_cross_scale_pairwise": cross["pairwise"],
        "crs_cross_scale_summary": cross["summary"],
        "icaht": icaht_s,
        "icaht_daily": icaht_daily(study),
        "count_recovery": recovery_days(study),
        "car_hematotox": car_hematotox(study),
        "easix": easix(study),
        "iec_hs_flags": iec_hs_flags(study),
        "adae_toxicity": adae_toxicity(study, parts),
    }


def _has_times(adtte: pl.DataFrame, paramcd: str) -> bool:
    return adtte.filter((pl.col("PARAMCD") == paramcd) & pl.col("AVAL").is_not_null()).height > 0


def _response_tables(study: Study) -> dict[str, pl.DataFrame]:
    from cartlab.response.best import best_response, derive_adrs, orr
    from cartlab.response.endpoints import cumulative_incidence, derive_adtte, km_estimate
    from cartlab.response.marrow import marrow_response, relapse
    from cartlab.response.molecular import antigen_loss, molecular_response

    marrow = marrow_response(study)
    best = best_response(study, assessments=marrow)
    # every assessment (not only the best) so that the first remission day starts RFS/CIR
    assessments = marrow.select("subject_id", pl.col("category").alias("best_response"),
                                pl.col("day").alias("best_response_day"), "evidence")
    adtte = derive_adtte(study, responses=assessments, relapses=relapse(study, marrow))
    rates = pl.concat([
        orr(best, cats, by=by).with_columns(pl.lit(name).alias("endpoint"))
        for name, cats in (("ORR", None), ("CR/CRh/CRi", ("CR", "CRh", "CRi")))
        for by in (None, "criteria")
    ], how="diagonal_relaxed")
    km = [km_estimate(adtte, p) for p in ("OS", "EFS", "LFS") if _has_times(adtte, p)]
    cif = [cumulative_incidence(adtte, code).with_columns(pl.lit(what).alias("event"))
           for code, what in ((1, "relapse"), (2, "death without relapse"))] if _has_times(adtte, "CIR") else []
    return {
        "marrow_response": marrow,
        "best_response": best,
        "adrs": derive_adrs(study, assessments=marrow, best=best),
        "adtte": adtte,
        "response_rates": rates,
        "km": pl.concat(km, how="diagonal_relaxed") if km else pl.DataFrame(),
        "cumulative_incidence": pl.concat(cif, how="diagonal_relaxed") if cif else pl.DataFrame(),
        "molecular_response": molecular_response(study),
        "antigen_loss": antigen_loss(study),
    }


def _kinetics_tables(study: Study, best: pl.DataFrame, crs: pl.DataFrame) -> dict[str, pl.DataFrame]:
    from cartlab.kinetics.car import car_kinetics, derive_adpc, derive_adpp, kinetics_summary
    from cartlab.kinetics.exposure import exposure_response

    k = car_kinetics(study)
    exposure = (kinetics_summary(study, kinetics=k)
                .join(best.select("subject_id", "best_response"), on="subject_id", how="left")
                .join(crs.select("subject_id", "crs_grade_astct"), on="subject_id", how="left"))
    return {
        "car_kinetics": k,
        "adpc": derive_adpc(study),
        "adpp": derive_adpp(study, kinetics=k),
        "exposure_response": exposure_response(exposure),
    }


def write_tables(tables: dict[str, pl.DataFrame], out_dir: str | Path) -> list[Path]:
    """Write each table as ``<name>.csv`` (list columns joined with '; ')."""
    from cartlab.grading.adam import to_csv_frame

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, df in tables.items():
        path = out / f"{name}.csv"
        tmp = path.with_suffix(".csv.tmp")
        to_csv_frame(df).write_csv(tmp)
        tmp.replace(path)
        paths.append(path)
    return paths


def write_summary(summary: pl.DataFrame, out_dir: str | Path, meta: dict) -> Path:
    """Write ``subject_summary.csv`` (booleans as true/false, empty = not evaluable) + manifest."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "subject_summary.csv"
    text = summary.with_columns(
        pl.col(pl.Boolean).cast(pl.String).str.to_lowercase()
    )
    tmp = path.with_suffix(".csv.tmp")
    text.write_csv(tmp)
    tmp.replace(path)
    (out / "analysis.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")
    return path
