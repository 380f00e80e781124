"""Cellular kinetics of any table or study: cartlab nca, cartlab stein."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from cartlab.cli.base import (
    DEFAULT_STORE_PATH,
    CsvAnyDialectOpt,
    CsvTableDialectOpt,
    StoreOpt,
    _load_study,
    _progress,
    _usage,
    app,
    console,
    err,
)
from cartlab.cli.grammar import StudyOpt, aliased, one_value, spelled
from cartlab.errors import CartlabError

#: the column options of the table commands, renamed from --subject/--time/--conc/--lloq (which read
#: as a subject id or a day elsewhere); the old names are hidden, deprecated aliases
COLUMN_ALIASES = {"--subject": "--subject-col", "--time": "--time-col", "--conc": "--conc-col", "--lloq": "--lloq-col"}
#: stein: --subject is a subject id in every command now (review 41 diff2 7), no longer the old name of
#: --subject-col; stein fits every subject of its input, so it is refused, naming the column option
STEIN_REFUSED = {"--subject": "--subject is a subject id (stein fits every subject of its input); the column is "
                 "--subject-col"}
STEIN_ALIASES = {old: new for old, new in COLUMN_ALIASES.items() if old not in STEIN_REFUSED}


# ../shared/conformance/README.md runs `cartlab nca ... --subject Subject --time Time --conc conc`:
# those spellings stay, hidden and without a deprecation warning
@app.command("nca", cls=aliased(COLUMN_ALIASES, silent=COLUMN_ALIASES))
def nca_cmd(
    table: Annotated[Path, typer.Argument(
        metavar="FILE", help="A plain CSV table, not a study (for a study use cartlab analyze): one row per sample "
        "(any concentration-time data, not only CAR-T).")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FILE",
                                      help="Output CSV: one row per subject and interval.")],
    subject: Annotated[str, typer.Option("--subject-col", metavar="COLUMN", help="Subject column.")],
    time: Annotated[str, typer.Option("--time-col", metavar="COLUMN", help="Time column (numbers).")],
    conc: Annotated[str, typer.Option("--conc-col", metavar="COLUMN",
                                      help="Concentration column (numbers; '<x' = below x; BLQ or <LLOQ = below "
                                      "the row's --lloq-col).")],
    lloq: Annotated[Optional[str], typer.Option("--lloq-col", metavar="COLUMN",
                                                help="LLOQ column: conc below it is BLQ.")] = None,
    method: Annotated[str, typer.Option(
        "--method", help="AUC interpolation: lin-up/log-down (default, PKNCA), linear, lin-log, log-up/log-down.")]
    = "lin-up/log-down",
    interval: Annotated[Optional[list[str]], typer.Option(
        "--interval", help="START,END (repeatable; END may be inf). Default: 0,inf. As in PKNCA's pk.nca, the "
        "PKNCA-named columns use only the samples inside the interval, with times from START; aucint (PKNCA "
        "aucint.inf.obs: the lambda.z tail after tlast), aucint.last (0 after tlast) and aucint.all (the linear "
        "triangle from tlast to the next BLQ sample) interpolate at the edges.")] = None,
    conc_unit: Annotated[Optional[str], typer.Option(
        "--conc-unit", help="Unit of the concentrations (e.g. ng/mL): OUT_units.csv then gives each column's unit "
        "(cmax ng/mL, AUCs time*conc, lambda.z 1/time), as PKNCA does.")] = None,
    time_unit: Annotated[Optional[str], typer.Option(
        "--time-unit", help="Unit of the times (e.g. h, d): tmax, tlast, half.life in it, lambda.z in 1/it.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace --out (and OUT_units.csv) when it is an existing file (even the input table).")]
    = False,
    blq_first: Annotated[str, typer.Option(
        "--blq-first", metavar="keep|drop|NUMBER",
        help="BLQ before the first quantifiable value: keep as 0 (PKNCA conc.blq first), drop, or this number.")]
    = "keep",
    blq_middle: Annotated[str, typer.Option(
        "--blq-middle", metavar="keep|drop|NUMBER",
        help="BLQ between quantifiable values: drop (PKNCA conc.blq middle), keep as 0, or this number.")] = "drop",
    blq_last: Annotated[str, typer.Option(
        "--blq-last", metavar="keep|drop|NUMBER",
        help="BLQ after the last quantifiable value: keep as 0 (PKNCA conc.blq last), drop, or this number.")]
    = "keep",
    csv_dialect: CsvTableDialectOpt = "standard",
) -> None:
    """Non-compartmental analysis with PKNCA's rules and column names (cmax, tmax, tlast, clast.obs,
    auclast, aucall, aucinf.obs, lambda.z, half.life, r.squared, adj.r.squared, lambda.z.n.points ...).

    The input is a plain table, not a study (for a study use cartlab analyze, whose kinetics engine
    derives the CAR-T metrics); --subject-col, --time-col and --conc-col name its columns.

    BLQ: 0 before the first quantifiable value, dropped between, 0 after the last (PKNCA defaults;
    --blq-first, --blq-middle, --blq-last change them); lambda.z by PKNCA's best-fit selection
    (adjusted R², >= 3 points, Tmax excluded).

    [bold]Example[/]: cartlab nca theoph.csv --subject-col Subject --time-col Time --conc-col conc --out nca.csv
    """
    from cartlab.cli.kinetics_io import blq_rules, nca_command

    try:
        options = blq_rules(blq_first=blq_first, blq_middle=blq_middle, blq_last=blq_last)
        with _progress(f"NCA of {table.name}") as step:
            step("profiles")
            summary = nca_command(table, out, subject=subject, time=time, conc=conc, lloq=lloq, method=method,
                                  intervals=interval or None, conc_unit=conc_unit, time_unit=time_unit,
                                  force=force, options=options, csv_dialect=csv_dialect)
    except ValueError as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(str(exc)) from None
    console.print(f"[green]wrote[/] {out}: " + ", ".join(f"{k} {v}" for k, v in summary.items()
                                                       if not isinstance(v, (list, dict))), soft_wrap=True)


@app.command("stein", cls=aliased(STEIN_ALIASES, refused=STEIN_REFUSED))
def stein_cmd(
    ctx: typer.Context,
    source: Annotated[Optional[str], typer.Argument(
        metavar="STUDY|FILE", help="A study (a study folder, or the id of a study in the store), or a plain CSV "
        "table with one row per sample (then --subject-col, --time-col and --conc-col name its columns).")] = None,
    study: StudyOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", metavar="DIR", help="Output folder (an earlier Stein "
                                      "output in it is replaced whole).")] = Path("out/stein"),
    force: Annotated[bool, typer.Option(
        "--force", help="Write into a folder that holds other files (not an earlier Stein fit): its stein_* files "
        "are replaced, the others kept.")] = False,
    population: Annotated[bool, typer.Option(
        "--population", help="Population fit (SAEM: typical values, omega², covariates, VPC) instead of "
        "per-subject fits.")] = False,
    subject: Annotated[Optional[str], typer.Option("--subject-col", metavar="COLUMN",
                                                   help="Table: subject column.")] = None,
    time: Annotated[Optional[str], typer.Option(
        "--time-col", metavar="COLUMN", help="Table: time column (days from the first infusion, or give --doses).")
    ] = None,
    conc: Annotated[Optional[str], typer.Option(
        "--conc-col", metavar="COLUMN", help="Table: concentration column ('<x' = below x).")] = None,
    lloq: Annotated[Optional[str], typer.Option("--lloq-col", metavar="COLUMN", help="Table: LLOQ column.")] = None,
    doses: Annotated[Optional[Path], typer.Option(
        "--doses", metavar="FILE", help="Table: CSV of infusions (subject and time columns as in the table, optional dose).")] = None,
    param: Annotated[str, typer.Option("--param", help="Study: observation parameter.")] = "CARCOPY",
    blq: Annotated[str, typer.Option("--blq", metavar="m3|drop|half", help="BLQ handling: m3 (Beal M3, default), drop, half.")] = "m3",
    dose_handling: Annotated[str, typer.Option(
        "--dose-handling", metavar="first|superpose", help="Split infusions: first (time from the first, default) or superpose.")] = "first",
    covariate: Annotated[Optional[list[str]], typer.Option(
        "--covariate", help="PARAMETER=COVARIATE log-linear effect, repeatable (with --population), "
        "e.g. cmax=log_dose.")] = None,
    fix: Annotated[Optional[list[str]], typer.Option(
        "--fix", help="PARAMETER=VALUE held fixed, repeatable, e.g. beta=0.0032; per-subject fits also take "
        "sigma=VALUE (the residual SD on the log scale).")] = None,
    prior: Annotated[Optional[str], typer.Option(
        "--prior", help="Per-subject MAP fits with a population prior: stein2019 (Stein 2019 Table 1). The "
        "residual SD is then held at the prior's (0.56), as empirical-Bayes fits do.")] = None,
    estimate_sigma: Annotated[bool, typer.Option(
        "--estimate-sigma", help="With --prior: estimate the residual SD per subject instead of holding it at "
        "the prior's (it can collapse towards 0 on sparse data).")] = False,
    ftoci: Annotated[Optional[float], typer.Option(
        "--ftoci", help="Multiplier of the expansion rate after the first tocilizumab (1 = no effect; default: 1, "
        "or the prior's under --prior: Stein 2019 Table 1: 1.2, not significant).")] = None,
    fster: Annotated[Optional[float], typer.Option(
        "--fster", help="Multiplier of the expansion rate after the first corticosteroid (default: 1, or the "
        "prior's under --prior; Stein 2019: 1.0).")] = None,
    tlag: Annotated[float, typer.Option("--tlag", metavar="DAYS", help="Lag before expansion starts (default 0).")] = 0.0,
    missing_dose: Annotated[str, typer.Option(
        "--missing-dose", help="--dose-handling superpose with an unknown infusion dose: error (default), equal "
        "(equal fractions) or first (that subject's first infusion only).")] = "error",
    no_infusion: Annotated[str, typer.Option(
        "--no-infusion", help="--doses given, a subject without an infusion row: drop (default; time origin "
        "unknown) or as_is (times kept).")] = "drop",
    split_dose_gap_days: Annotated[Optional[float], typer.Option(
        "--split-dose-gap-days", metavar="DAYS", help="An infusion more than DAYS after the previous one is a "
        "re-infusion (named in the dosing_note and warned about); closer ones, and a product's labelled split "
        "dose (obe-cel: Day 1 and Day 10, up to Day 21), are fractions of one dose. Default: the analysis's "
        "kinetics.split_dose_gap_days (7).")] = None,
    peak_window: Annotated[str, typer.Option(
        "--peak-window", help="A fitted peak after the subject's last sample: observed (default: not reported, "
        "flagged) or model (reported, flagged).")] = "observed",
    derived_if_unidentified: Annotated[str, typer.Option(
        "--derived-if-unidentified", help="Per-subject fits flagged 'not identified': null (default: no Cmax/AUC "
        "where they depend on an unidentified parameter) or keep.")] = "null",
    seed: Annotated[int, typer.Option("--seed", min=0, help="Population: random seed (same seed, same result).")] = 0,
    n_starts: Annotated[int, typer.Option(
        "--n-starts", min=1, help="Population: independent SAEM runs (seeds derived from --seed); the highest "
        "log-likelihood is kept, every run is recorded in stein_fit.json (starts) and a warning says when they "
        "disagree (default 3; each run costs one fit).")] = 3,
    blq_below_lloq: Annotated[bool, typer.Option(
        "--blq-below-lloq/--no-blq-below-lloq", help="A reported value below its row's LLOQ is censored (BLQ) at "
        "the LLOQ (default, the study-format spec); its measured value stays in stein_observations.csv.")] = True,
    auc_extrap_warn_pct: Annotated[float, typer.Option(
        "--auc-extrap-warn-pct", metavar="PCT", help="Flag a subject (auc_extrapolated) when more than PCT % of "
        "stein_auc_0_28 lies after its last sample (default 20, the NCA convention for AUCinf %extrap).")] = 20.0,
    se_df_correction: Annotated[str, typer.Option(
        "--se-df-correction", metavar="residual|none", help="Per-subject ML fits with sigma estimated: residual "
        "(default: covariance x n/(n - p), 95% CIs from t(n - p), as nonlinear least squares) or none (ML "
        "covariance, z 1.96: the earlier reading).")] = "residual",
    conc_unit: Annotated[Optional[str], typer.Option(
        "--conc-unit", help="Table: unit of the concentrations (e.g. copies/ug), written into stein_units.csv "
        "(a study's values are in the canonical unit, CARCOPY copies/ug gDNA).")] = None,
    n_burn: Annotated[int, typer.Option("--n-burn", min=1, help="Population: SAEM iterations with step 1.")] = 300,
    n_smooth: Annotated[int, typer.Option("--n-smooth", min=1, help="Population: SAEM iterations with decreasing step.")] = 200,
    n_post: Annotated[int, typer.Option("--n-post", min=1, help="Population: MCMC iterations for SEs.")] = 150,
    n_chains: Annotated[Optional[int], typer.Option("--n-chains", min=1, help="Population: chains per subject.")] = None,
    store: StoreOpt = DEFAULT_STORE_PATH,
    csv_dialect: CsvAnyDialectOpt = "standard",
) -> None:
    """Fit the Stein 2019 CAR-T kinetic model (expansion to Tmax, biphasic contraction), per subject
    by maximum likelihood or as a population by SAEM, with the Beal M3 likelihood for BLQ samples.

    Writes stein_estimates.csv or stein_population.csv, stein_subjects.csv (parameters, Cmax, Tmax,
    AUC0-28, half-lives), stein_observations.csv (observed vs fitted, with source rows),
    stein_fits.png, stein_vpc.png (population), stein_units.csv (the unit of every column) and
    stein_fit.json (inputs, options, BLQ rule, SAEM starts, fit statistics).

    The input is a study, named as everywhere (a study folder, or the id of a study in the store,
    --store; the STUDY|FILE argument or --study STUDY), or a plain CSV table with one row per sample
    (the argument only: --study is always a study).

    [bold]Example[/]: cartlab stein cohort/ --population --covariate cmax=log_dose --out stein/
    [bold]Example[/]: cartlab stein conc.csv --subject-col ID --time-col DAY --conc-col DV --out stein/
    """
    from cartlab.cli.kinetics_io import stein_command

    if study is not None:  # --study names a study only, never a plain table
        source = one_value("STUDY|FILE", source, "--study", study, "study")
        if Path(source).is_file():
            raise _usage(f"--study {source}: a file, not a study folder or stored study id",
                         hint=f"a plain table is given as the argument: cartlab stein {source} --subject-col ...")
    if source is None:
        raise _usage("give the input: a study (STUDY or --study STUDY) or a plain table (FILE)")
    path = Path(source)
    if path.is_file():  # a plain table
        study = path
    elif not path.exists() and (len(path.parts) > 1 or path.suffix.lower() in (".csv", ".tsv", ".txt")):
        raise _usage(f"{source}: no such file or folder")  # written as a path or a file name, not an id
    else:  # a study folder, or the id of a stored study
        study = _load_study(source, store, csv_dialect)
    names = {k: spelled(ctx, f"--{k}-col") for k in ("subject", "time", "conc", "lloq")}
    try:
        with _progress("Stein fit", total=1) as step:
            def report(stage: str, done: int, total: int) -> None:
                step(stage, completed=done if total else None, total=total or None)

            meta = stein_command(
                study, out, population=population, subject=subject, time=time, conc=conc, lloq=lloq,
                doses=doses, param=param, blq=blq, dose_handling=dose_handling, covariates=covariate or (),
                fixed=fix or (), prior=prior, estimate_sigma=estimate_sigma, ftoci=ftoci, fster=fster, tlag=tlag,
                missing_dose=missing_dose, no_infusion=no_infusion, peak_window=peak_window,
                derived_if_unidentified=derived_if_unidentified, seed=seed, n_starts=n_starts,
                blq_below_lloq=blq_below_lloq, auc_extrap_warn_pct=auc_extrap_warn_pct,
                se_df_correction=se_df_correction, conc_unit=conc_unit, split_dose_gap_days=split_dose_gap_days,
                n_burn=n_burn, n_smooth=n_smooth, n_post=n_post, n_chains=n_chains,
                progress=report, option_names=names, force=force, csv_dialect=csv_dialect)
    except ValueError as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(str(exc), hint="Nothing was written.") from None
    what = "population (SAEM)" if population else "per-subject"
    dropped = (f"{meta['n_dropped']} dropped: rows and reasons in {out / 'stein_dropped.csv'}" if meta["n_dropped"]
               else "0 dropped")
    console.print(f"[green]wrote[/] {out}: {what} fit of {meta['n_subjects']} subject(s), {meta['n_observations']} "
                  f"observations ({meta['n_blq']} BLQ, {dropped})", soft_wrap=True)
    if not population and meta["not_fitted"]:
        for sid, why in meta["not_fitted"].items():
            console.print(f"[yellow]{sid}:[/] {why}", soft_wrap=True)
    if not population and meta["not_converged"]:
        console.print(f"[yellow]not converged or not identified:[/] {', '.join(meta['not_converged'])} (see "
                      "stein_subjects.csv, column message)", soft_wrap=True)
    for w in meta.get("warnings") or ():
        if w.startswith("information matrix not positive definite"):
            continue  # already printed: the fit raised it as a CartlabWarning (once, not twice)
        err.print(f"  [yellow]![/] {w}", soft_wrap=True, highlight=False)  # warnings on stderr, one prefix (review 38 C3)
    if meta.get("warning"):
        err.print(f"  [yellow]![/] {meta['warning']}", soft_wrap=True, highlight=False)


#: STUDY|FILE is needed unless --study gives the study: the usage line shows it as needed (grammar.with_grammar)
stein_cmd.cartlab_needed = frozenset({"source"})


# ------------------------------------------------------------------------------------------------
# protocols, dosing, eligibility, deviations
