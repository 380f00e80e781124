"""A patient's digital twin: cartlab twin fit, cartlab twin forecast (design §4, issue 16)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer

from cartlab.cli.base import DEFAULT_STORE_PATH, CsvDialectOpt, StoreOpt, _progress, _usage, app, console
from cartlab.cli.grammar import STUDY_HELP, App, SubjectOpt, study_argument
from cartlab.cli.interop import load_source

twin_app = App(help="A patient's digital twin of CD7 CAR-T therapy: fit, forecast.", no_args_is_help=True,
                       rich_markup_mode="rich")
app.add_typer(twin_app, name="twin")

StudyArg = study_argument(STUDY_HELP + " None: the store's only study. The same as --study STUDY.")
SourcesOpt = Annotated[list[str] | None, typer.Option(
    "--sources", help="Fit only observation rows with this source label (repeatable or comma-separated), e.g. "
    "paper. Doses and interventions are always used as inputs.")]
PosteriorOpt = Annotated[str, typer.Option("--posterior", help="laplace (Laplace + SIR, default) or mcmc.")]
AnchorsOpt = Annotated[bool, typer.Option(
    "--seed-anchors", help="Add the seed paper's qualitative facts (fever days, hypotension, neutropenia, CD7+ "
    "fall, peak day) as soft pseudo-observations.")]
SeedOpt = Annotated[int, typer.Option("--seed", min=0, help="Random seed (same seed, same result).")]
OtherTargetOpt = Annotated[bool, typer.Option(
    "--allow-other-target", help="Fit a subject whose subjects.target is not CD7 (e.g. CD19) with the CD7 model "
    "anyway (refused by default: the twin models CD7 CAR-T). The forecast is then flagged unreliable.")]
BaselineBlqOpt = Annotated[str, typer.Option(
    "--baseline-blq", help="A baseline value reported below its limit (\"<1.5\"): half_lloq (default; the limit / 2), "
    "lloq (the limit) or missing (the population default, as before session 47).")]


def _sources(values: list[str] | None) -> tuple[str, ...] | None:
    if not values:
        return None
    return tuple(s.strip() for v in values for s in v.split(",") if s.strip())


def _model(sources, posterior: str, anchors: bool, seed: int, draws: int, allow_other_target: bool = False,
           missing_baseline: str = "integrate", baseline_blq: str = "half_lloq"):
    from cartlab.twin.baseline_prior import BASELINE_BLQ, MISSING_BASELINE
    from cartlab.twin.fit import SEED_ANCHORS, TwinModel

    if posterior not in ("laplace", "mcmc"):
        raise _usage(f"--posterior must be laplace or mcmc, not {posterior!r}")
    if missing_baseline not in MISSING_BASELINE:
        raise _usage(f"--missing-baseline must be one of {', '.join(MISSING_BASELINE)}, not {missing_baseline!r}")
    if baseline_blq not in BASELINE_BLQ:
        raise _usage(f"--baseline-blq must be one of {', '.join(BASELINE_BLQ)}, not {baseline_blq!r}")
    return TwinModel(sources=_sources(sources), posterior=posterior, anchors=SEED_ANCHORS if anchors else (),
                     seed=seed, n_draws=draws, n_sir=max(2 * draws, 500), allow_other_target=allow_other_target,
                     missing_baseline=missing_baseline, baseline_blq=baseline_blq)


def _param_table(model):
    """The model's parameter table (its ``prior``: a table name or a ParamTable), read through the public
    :func:`cartlab.twin.params.load_params`, not the model's private helper (review38 diff2 C6)."""
    from cartlab.twin.params import load_params

    return load_params(model.prior) if isinstance(model.prior, str) else model.prior


def _write_fit(model, tmp: Path, meta: dict) -> None:
    import polars as pl

    from cartlab.twin.identify import identifiability

    def simulated(df):   # model-based tables carry source = simulated, as the study tables' simulated rows
        return df if "source" in df.columns else df.with_columns(pl.lit("simulated").alias("source"))

    from cartlab.twin.provenance import data_sources, rows_by_source, versions, with_param_columns

    table = _param_table(model)   # unit, status, citation of each parameter from its YAML row (review 38 B3)
    with_param_columns(model.summary, table).write_csv(tmp / "twin_params.csv")
    with_param_columns(simulated(model.params_), table).write_csv(tmp / "twin_all_params.csv")
    # measured rows keep their own source; the twin's prediction columns are named ipred / iwres
    model.observations_.write_csv(tmp / "twin_observations.csv")
    # statistics of the subject's rows against the twin: data_sources names those rows' sources (review 40 C1)
    data_sources(model.fit_quality_, model.observations_).write_csv(tmp / "twin_fit_quality.csv")
    ident = identifiability(model, profile_params=())
    data_sources(ident, model.observations_, None).write_csv(tmp / "twin_identifiability.csv")
    if model.anchors_.height:
        model.anchors_.write_csv(tmp / "twin_anchors.csv")
    model.plot(tmp / "twin_fit.png")
    meta.update({
        "subject_id": model.subject_id_, "sources": list(model.sources) if model.sources else None,
        "posterior": model.posterior, "converged": model.converged_, "message": model.message_,
        "objective": model.objective_, "sir_ess": None if math.isnan(model.ess_) else model.ess_,
        "posterior_unique_draws": getattr(model, "n_unique_draws_", None), "target": getattr(model, "target_", None),
        "n_observations": model.observations_.height, "sensitivity": model.sensitivity_,
        "fit_quality": model.fit_quality_.to_dicts(), "intervals_reliable": model.intervals_reliable_,
        # baseline values the data lack, taken from the parameter table's baseline_defaults (session 36)
        "baseline_defaults_used": getattr(model, "baseline_defaults_used_", {}),
        "baseline_blq_used": getattr(model, "baseline_blq_used_", {}),
        # a measured CARCOPY above the model's ceiling VCN x genomes/ug (review 40 B3; null: none)
        "car_ceiling": getattr(model, "car_ceiling_", None),
        "values": "the twin's curves are simulated (source = simulated), not measured",
        "model": versions(table), "rows_by_source": rows_by_source(model.observations_),
    })
    if "study_arg" in meta:   # seed, cartlab version, parameter set, study path and input hashes (review 40 B4)
        from cartlab.twin.trace import trace_record

        meta.update(trace_record(model, table, meta.pop("_data"), meta.pop("study_arg")))


def _twin_owned(name: str) -> bool:
    return name.startswith("twin_")


def _earlier_twin(kind: str):
    """Recognises a ``kind`` folder (twin_fit / twin_forecast) written before the export marker existed:
    a forecast never replaces an old fit folder without --force, nor the reverse."""
    def earlier(out: Path) -> bool:
        return (out / f"{kind}.json").is_file()
    return earlier


def _check_out(out: Path, what: str, kind: str = "twin", force: bool = False) -> None:
    """The output folder can be written (not a file, no file among its parents; missing, empty or an
    earlier twin output, else refused unless ``force``, as analyses and reports): checked before the
    fit, which takes minutes, so a mistyped --out is told at once (exit 2)."""
    import shutil
    import tempfile

    from cartlab.io.atomic import check_output_folder, check_output_path, write_error

    check_output_path(out, "folder", what)
    check_output_folder(out, kind, force=force, what=what, earlier=_earlier_twin(kind))
    base = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    try:  # can a folder be made where the output goes (not /proc, a read-only disk ...)?
        shutil.rmtree(tempfile.mkdtemp(prefix=".cartlab-check-", dir=base if base.is_dir() else base.parent))
    except OSError as exc:
        raise write_error(out, exc) from None


def _write_folder(out: Path, write, kind: str = "twin", force: bool = False) -> None:
    """``write(tmp)`` into a staging folder swapped into ``out`` when complete (an earlier twin output
    replaced whole, other files kept only with ``force``); a file system error names ``out`` (the
    user's path, never the temporary folder's)."""
    from cartlab.io.atomic import export_folder, write_error

    try:
        with export_folder(out, kind, owned=_twin_owned, force=force, what=f"the {kind.replace('_', ' ')}",
                           earlier=_earlier_twin(kind)) as target:
            write(target.staging)
    except OSError as exc:
        raise write_error(out, exc) from None


ForceOpt = Annotated[bool, typer.Option(
    "--force", help="Write into a folder that holds other files (not an earlier twin output): its twin_* files are "
    "replaced, the others kept.")]


def _first_observed_day(data, subject: str) -> float | None:
    """The subject's first observation day (None: no observation with a day)."""
    import polars as pl

    obs = getattr(data, "observations", None)
    if obs is None or "subject_id" not in obs.columns or "day" not in obs.columns:
        return None
    m = obs.filter(pl.col("subject_id") == subject)["day"].cast(pl.Float64, strict=False).min()
    return None if m is None else float(m)


def _last_recorded_day(data, subject: str) -> float | None:
    """The subject's last day with data: observations, doses, interventions, events, follow-up."""
    import polars as pl

    days: list[float] = []
    for name, cols in (("observations", ("day",)), ("doses", ("day",)), ("interventions", ("start_day", "end_day")),
                       ("events", ("day", "start_day", "end_day")), ("subjects", ("last_followup_day",))):
        df = getattr(data, name, None)
        if df is None or "subject_id" not in df.columns:
            continue
        rows = df.filter(pl.col("subject_id") == subject)
        for c in cols:
            if c in rows.columns and rows.height:
                m = rows[c].cast(pl.Float64, strict=False).max()
                if m is not None:
                    days.append(float(m))
    return max(days) if days else None


@twin_app.command("fit")
def fit_cmd(
    study: StudyArg = None,
    subject: SubjectOpt = ...,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("out/twin"),
    sources: SourcesOpt = None,
    posterior: PosteriorOpt = "laplace",
    draws: Annotated[int, typer.Option("--draws", min=10, help="Posterior draws kept (SIR proposal: twice).")] = 1000,
    seed_anchors: AnchorsOpt = False,
    seed: SeedOpt = 0,
    allow_other_target: OtherTargetOpt = False,
    baseline_blq: BaselineBlqOpt = "half_lloq",
    store: StoreOpt = DEFAULT_STORE_PATH,
    csv_dialect: CsvDialectOpt = "standard",
    force: ForceOpt = False,
) -> None:
    """Fit the CD7 CAR-T twin to one subject's course (MAP with the population prior, Laplace+SIR or MCMC
    posterior). Writes twin_params.csv (estimates, SE, 95% CI, shrinkage), twin_observations.csv (observed
    vs twin), twin_fit_quality.csv (per parameter: RMS standardised residual, whether the twin describes it),
    twin_identifiability.csv, twin_fit.png and twin_fit.json. --subject SUBJECT: the subject to fit.

    [bold]Example[/]: cartlab twin fit out/seed_case --subject CD7-AML-001 --sources paper --seed-anchors --out twin/
    """
    _check_out(out, "the twin fit", "twin_fit", force)
    model = _model(sources, posterior, seed_anchors, seed, draws, allow_other_target, baseline_blq=baseline_blq)
    data, _ = load_source(study, store, csv_dialect=csv_dialect)  # the options first: a bad flag before reading
    with _progress(f"fitting the twin of {subject}") as step:
        model.fit(data, subject)
        step("identifiability and figure")
        meta: dict = {"command": "twin fit", "study_arg": study, "_data": data}

        def write(tmp: Path) -> None:
            _write_fit(model, tmp, meta)
            (tmp / "twin_fit.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

        _write_folder(out, write, "twin_fit", force)
    console.print(f"[green]wrote[/] {out}: twin of {subject} fitted to {model.observations_.height} observations "
                  f"({'converged' if model.converged_ else 'NOT converged: ' + model.message_})"
                  + _misfit_note(model), soft_wrap=True)


def _misfit_note(model) -> str:
    import polars as pl

    bad = model.fit_quality_.filter(pl.col("describes").not_())["param"].to_list()
    return f"; [yellow]the twin does not describe {', '.join(bad)}[/] (twin_fit_quality.csv)" if bad else ""


@twin_app.command("forecast")
def forecast_cmd(
    study: StudyArg = None,
    subject: SubjectOpt = ...,
    from_day: Annotated[float, typer.Option(
        "--from-day", metavar="DAY", help="The forecast's origin (a study day): the twin is fitted to the data up to "
        "this day only and forecasts the rest. Not a display window like cartlab show --from/--to: it changes "
        "what the fit sees.")] = 7.0,
    draws: Annotated[int, typer.Option("--draws", min=10, help="Posterior draws (SIR proposal: twice). With the "
                                       "Laplace posterior the forecast simulates every importance draw with its "
                                       "weight; with MCMC, the draws kept.")] = 1000,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder.")] = Path("out/twin_forecast"),
    sources: SourcesOpt = None,
    posterior: PosteriorOpt = "laplace",
    seed: SeedOpt = 0,
    allow_other_target: OtherTargetOpt = False,
    missing_baseline: Annotated[str, typer.Option(
        "--missing-baseline", help="A missing weight or marrow blast count at baseline: integrate (default; each "
        "forecast draw takes its own value from the population prior cd7_pop_v1, so the interval carries that "
        "spread) or default (every draw at the parameter table's default value, the interval ignores it).")
    ] = "integrate",
    baseline_blq: BaselineBlqOpt = "half_lloq",
    show_withheld: Annotated[bool, typer.Option(
        "--show-withheld", help="Print forecasts that are withheld (the twin does not describe a parameter they "
        "rest on, RMS standardised residual > 3; or its CAR course lies off the CARCOPY values it was fitted to) "
        "and unresolved intervals anyway. twin_forecast.csv always has them, with withheld_reason.")] = False,
    max_car_bias: Annotated[float, typer.Option(
        "--max-car-bias", metavar="SD", min=0.0, help="Largest mean standardised CARCOPY residual (in observation "
        "SDs, either sign) up to --from-day for which the twin's CAR course counts as consistent with the data "
        "it was fitted to (default 3: the fit-quality threshold; 3 x 0.56 on the log scale = 5.4-fold).")] = 3.0,
    store: StoreOpt = DEFAULT_STORE_PATH,
    csv_dialect: CsvDialectOpt = "standard",
    force: ForceOpt = False,
) -> None:
    """Forecast the rest of a subject's course from the data up to --from-day: CAR peak (median, 50%
    and 90% prediction intervals), P(CRS grade >= 3), P(CR/CRh/CRi/MLFS on day 28, by marrow and blood blasts; counts not used), with the clinic rule
    deciding interventions after that day. Writes twin_forecast.csv, twin_params.csv, twin_fit_quality.csv,
    twin_identifiability.csv, twin_forecast.png, twin_fit.png and twin_forecast.json. Flagged: intervals that
    the posterior draws do not resolve (not printed), a forecast resting on a parameter the twin does not
    describe or a CAR course off the CARCOPY values it was fitted to (value not printed; see --show-withheld,
    --max-car-bias), and a forecast peak below a value already measured. --subject SUBJECT: whose twin is
    fitted and forecast.

    [bold]Example[/]: cartlab twin forecast out/seed_case --subject CD7-AML-001 --from-day 7 --out fc/
    """
    if not math.isfinite(from_day):
        raise _usage(f"--from-day must be a finite number of days, got {from_day:g}")
    _check_out(out, "the twin forecast", "twin_forecast", force)
    # anchors describe the whole course: never in a forecast; the options are checked before the study is read
    model = _model(sources, posterior, False, seed, draws, allow_other_target, missing_baseline, baseline_blq)
    data, _ = load_source(study, store, csv_dialect=csv_dialect)
    last = _last_recorded_day(data, subject)
    if last is not None and from_day > last:
        raise _usage(f"--from-day {from_day:g} is beyond the last recorded day of subject {subject!r}: day {last:g}",
                     hint=f"give --from-day {last:g} or earlier: the forecast starts from the data up to that day")
    first = _first_observed_day(data, subject)
    if first is not None and from_day < first:  # review 38 C7: name the option, not "no observation"
        raise _usage(f"subject {subject!r} has no observation on or before --from-day {from_day:g} (the first is on "
                     f"day {first:g})", hint=f"give --from-day {first:g} or later")
    with _progress(f"forecasting {subject} from day {from_day:g}") as step:
        model.fit(data, subject, until_day=from_day)
        step("simulating forward")
        table = model.forecast(from_day, show_withheld=show_withheld, car_bias_iwres=max_car_bias)
        step("writing")
        meta: dict = {"command": "twin forecast", "from_day": from_day, "draws": draws,
                      "show_withheld": show_withheld, "max_car_bias": max_car_bias, "study_arg": study, "_data": data}

        def write(tmp: Path) -> None:
            _write_fit(model, tmp, meta)
            table.write_csv(tmp / "twin_forecast.csv")
            from cartlab.twin.plots import forecast_figure
            from cartlab.twin.provenance import forecast_assumptions

            forecast_figure(model, tmp / "twin_forecast.png")
            meta["forecast"] = table.to_dicts()
            meta["forecast_reliable"], meta["forecast_notes"] = model.forecast_reliable_, model.forecast_notes_
            meta["forecast_problems"] = model.forecast_problems_
            meta["forecast_prior_only"] = model.forecast_prior_only_
            meta["assumptions"] = forecast_assumptions(from_day)   # review 38 B3
            # missing baseline values drawn from the population prior per draw (review 40 B2)
            meta["baseline_drawn_from_prior"] = model.forecast_baseline_drawn_
            from cartlab.twin.fit import _T_GRID
            from cartlab.twin.trace import interval_mc_se

            meta["interval_mc_se"] = interval_mc_se(_T_GRID, model.forecast_sim_, model.forecast_weights_, seed)
            (tmp / "twin_forecast.json").write_text(json.dumps(meta, indent=2, default=str), encoding="utf-8")

        _write_folder(out, write, "twin_forecast", force)
    rows = {r["quantity"]: r for r in table.iter_rows(named=True)}
    caveat = "" if model.forecast_reliable_ else ": [yellow]NOT reliable[/]"
    console.print(f"[green]wrote[/] {out}: {_peak_text(rows['car_cmax'])}{caveat}), "
                  f"P(CRS>=3) {_prob_text(rows['crs_ge3'])}, P(response d28) {_prob_text(rows['response_d28'])}; "
                  "values are simulated" + _misfit_note(model), soft_wrap=True)
    if model.forecast_baseline_drawn_:
        from cartlab.twin.baseline_prior import drawn_text

        console.print(f"[yellow]{drawn_text(model.forecast_baseline_drawn_)}[/] (the intervals include that spread; "
                      "twin_forecast.json: baseline_drawn_from_prior)", soft_wrap=True)
    console.print(f"[dim]assumed: the clinic rule (clinic_v1) decides interventions after day {from_day:g}; recorded "
                  f"interventions after day {from_day:g} are not used; intervals are of the noise-free course "
                  "(twin_forecast.json: assumptions)[/]", soft_wrap=True)
    # the forecast's notes were printed once, as warnings on stderr (model.forecast warns each one);
    # not again on stdout (review 38 C3); twin_forecast.json keeps them as forecast_notes


def _peak_text(peak: dict) -> str:
    """The CAR peak as printed: the median and 90% PI when shown, else why not (twin.forecast.withhold)."""
    if not peak["value_shown"]:
        return "CAR peak [yellow]not shown[/] (see the notes; twin_forecast.csv has it with withheld_reason"
    pi = (f"90% PI {peak['pi90_lo']:.3g}-{peak['pi90_hi']:.3g}" if peak["interval_shown"]
          else "90% PI not resolved")
    return f"predicted CAR peak {peak['median']:.3g} copies/ug ({pi}"


def _prob_text(row: dict) -> str:
    return row["probability_shown"] if row["value_shown"] else "[yellow]not shown[/]"
