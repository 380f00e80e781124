"""Grading a plain table: cartlab ctcae."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
import typer.core
from rich.table import Table

from cartlab.cli.base import (
    CsvTableDialectOpt,
    _check_file,
    _progress,
    _usage,
    app,
    console,
    err,
)
from cartlab.cli.grammar import GrammarCommand
from cartlab.errors import CartlabError

#: what a bare ``--version`` (no value) gives: the program's version, as ``cartlab --version``
_SHOW_PROGRAM_VERSION = "\0program-version"


class _CtcaeCommand(GrammarCommand):
    """``--version`` was the CTCAE version's option (now ``--ctcae-version``; the old spelling is a
    hidden alias). typer has no option with an optional value, so a bare ``--version`` (last, or
    followed by another option) is read here as the program's ``--version`` instead of an error."""

    def parse_args(self, ctx, args):
        args = list(args)
        for i, a in enumerate(args):
            if a == "--":
                break
            if a == "--version" and (i + 1 == len(args) or args[i + 1].startswith("-")):
                args[i] = f"--version={_SHOW_PROGRAM_VERSION}"
        return super().parse_args(ctx, args)


#: options of a study's grading (derive_ctcae) that a plain table has no use for: refused by --set
#: (review 41 F6), with why
STUDY_ONLY = {
    "baseline_day": "a table gives base per row",
    "baseline_inclusive": "a table gives base per row",
    "baseline_day0": "a table gives base per row",
    "calcium_summary": "it shapes the subject-level toxicity summary; a table is graded row by row",
}


def _table_options() -> str:
    """The CTCAE options cartlab ctcae uses, for a refusal's list."""
    from cartlab.grading.ctcae import OPTION_DOCS

    return ", ".join(sorted(set(OPTION_DOCS) - set(STUDY_ONLY)))


def _parse_option_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    return text.strip()


@app.command("ctcae", cls=_CtcaeCommand)
def ctcae_cmd(
    input_csv: Annotated[Optional[Path], typer.Argument(
        metavar="FILE", help="CSV with term (a CTCAE term, or a parameter: ANC, PLT, Hb, NEUT ...), direction (L/H, low/high), "
        "aval (+ anrlo, anrhi, base, unit, bnrind, pchg; lln, uln, value, baseline are read as anrlo, anrhi, aval, "
        "base).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", metavar="FILE", help="Output CSV: the input rows plus grade, grade_max and grade_reason.")] = None,
    list_terms: Annotated[bool, typer.Option("--list-terms", help="List the terms, directions, parameters and units "
                                             "the criteria grade, and exit.")] = False,
    units: Annotated[Optional[str], typer.Option(
        "--units", metavar="SI|US|auto", help="Criteria unit system: SI, US or auto (by each row's unit). [default: auto]")] = None,
    ctcae_version: Annotated[Optional[str], typer.Option(
        "--ctcae-version", help="CTCAE version of the criteria tables. [default: 5.0]")] = None,
    version_alias: Annotated[Optional[str], typer.Option(
        "--version", hidden=True, help="Old name of --ctcae-version; alone, the program's version.")] = None,
    set_options: Annotated[Optional[list[str]], typer.Option(
        "--set", metavar="NAME=VALUE", help="One CTCAE option, NAME=VALUE or ctcae.NAME=VALUE (a YAML value), e.g. --set "
        "hypokalemia_symptomatic=false; repeatable; applied after --options. A wrong NAME is refused, listing the "
        "ambiguous-criterion options; a study-only option (baseline_day, baseline_inclusive, baseline_day0, "
        "calcium_summary) too.")] = None,
    options_file: Annotated[Optional[Path], typer.Option(
        "--options", help="A YAML file of engine options, as cartlab analyze takes; its ctcae section is used "
        "(e.g. 'ctcae: {hypokalemia_symptomatic: false}').")] = None,
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", hidden=True, help="Old form of --set NAME=VALUE (deprecated).")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Replace --out when it is an existing file (even the input table).")] = False,
    csv_dialect: CsvTableDialectOpt = "standard",
) -> None:
    """Grade a plain lab table with CTCAE (v5.0 default; SI and US conventional units).

    Every input column is kept, in the same row order; [bold]grade[/] (0-4, empty = cannot be graded),
    [bold]grade_max[/] (the highest grade the value leaves open: a censored result or a missing baseline;
    equal to grade when settled) and [bold]grade_reason[/] (the rule in words and its criteria id) are added. Ambiguous criteria
    follow admiral's (worst-case) reading by default; change them with --set NAME=VALUE or --options FILE.

    [bold]term[/]: a CTCAE term ("Neutrophil count decreased"), or a parameter as users write it — a
    cartlab code (NEUT, PLAT, HGB ...) or an alias (ANC, PLT, Hb, Na, Cr, ALT ...); a parameter's value is
    converted from its unit (/uL, mg/dL ...) to the criteria's. [bold]direction[/]: L or H (low, high,
    decreased, increased). cartlab ctcae --list-terms shows every term. [bold]aval[/]: a number, or a
    censored result ("<0.5", ">1000"), graded at both ends of its interval: two grades give the lower
    as grade and the higher as grade_max, the reason naming the range ("censored result <0.6 leaves
    grade 3-4 open"; a converted bound as written and converted: "<0.5 mg/dL (<8.552 umol/L)").

    [bold]Example[/]: cartlab ctcae labs.csv --out labs_graded.csv --set hypokalemia_symptomatic=false
    """
    from cartlab.cli.grading_io import ctcae_command
    from cartlab.grading.ctcae import ctcae_terms

    if version_alias == _SHOW_PROGRAM_VERSION:  # `cartlab ctcae --version`: what `cartlab --version` says
        from cartlab import __version__

        console.print(f"cartlab {__version__}")
        raise typer.Exit()
    if version_alias is not None:
        if ctcae_version is not None and ctcae_version != version_alias:
            raise _usage(f"--version {version_alias} and --ctcae-version {ctcae_version} disagree; give "
                         "--ctcae-version only")
        err.print("  [yellow]![/] --version VERSION is deprecated: use --ctcae-version VERSION", highlight=False)
        ctcae_version = version_alias
    if option:
        err.print("  [yellow]![/] --option is deprecated: use --set NAME=VALUE", highlight=False)
    opts, extra = _ctcae_options(ctcae_version, units, set_options, options_file, option)
    for name in _study_only_in_file(options_file):  # session 42: named, not silently ignored (a file may be analyze's)
        err.print(f"  [yellow]![/] {options_file}: ctcae.{name} applies to cartlab analyze (study folders), not "
                  f"used here: {STUDY_ONLY[name]}", highlight=False, soft_wrap=True)
    if list_terms:
        from cartlab.cli.grading_io import accepted_directions, term_listing

        terms = term_listing(ctcae_terms(opts.version, opts.units))
        t = Table(title=f"CTCAE {opts.version} terms ({opts.units} units)", header_style="bold",
                  caption=f"direction: {accepted_directions()} (any case). A parameter row's value is converted from "
                          "its unit (accepted units, or another spelling pint reads as one of them: K/uL, G/L ...)")
        for c in ("term", "direction", "params", "also written as", "unit", "accepted units", "table"):
            t.add_column(c, overflow="fold")
        for r in terms.select("term", "direction", "params", "also written as", "unit", "accepted units",
                              "table").iter_rows():
            t.add_row(*[x or "" for x in r])
        console.print(t)
        return
    if input_csv is None or out is None:
        raise _usage("give the FILE to grade and --out FILE (or --list-terms)")
    _check_file(input_csv)
    try:
        with _progress(f"grading {input_csv.name}") as step:
            step("CTCAE")
            summary = ctcae_command(input_csv, out, options=opts, force=force, csv_dialect=csv_dialect)
    except (ValueError, KeyError) as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(f"{input_csv}: {exc}", hint=f"known options: {_table_options()}"
                     if extra else None) from None
    by = ", ".join(f"grade {g}: {n}" for g, n in sorted(summary["by_grade"].items()))
    console.print(f"[green]wrote[/] {out}: {summary['rows']} rows, {summary['graded']} graded{f' ({by})' if by else ''}, "
                  f"{summary['not_gradable']} not gradable"
                  + (f", {summary['with_range']} with a range up to grade_max" if summary.get("with_range") else "")
                  + f"; criteria {', '.join(summary['criteria'])}")
    if summary.get("unknown_terms"):
        from cartlab.cli.grading_io import suggest_term

        terms = ctcae_terms(opts.version, opts.units)
        named = []
        for u in summary["unknown_terms"][:20]:
            near = suggest_term(u, terms)
            named.append(f"{u} (did you mean {near}?)" if near else u)
        console.print(f"[yellow]not CTCAE terms or known parameters:[/] {', '.join(named)} "
                      "(cartlab ctcae --list-terms lists the terms, the names each is also written as, and units)",
                      soft_wrap=True)
    if "expected_agree" in summary:
        n = summary.get("expected_missing_limit_range", 0)
        console.print(f"expected_grade column: {summary['expected_agree']} agree, "
                      f"{summary['expected_mismatch']} differ"
                      + (f" ({n} of them: expected not gradable, graded as a range because the value bounds the "
                         "grade without the missing reference limit)" if n else ""), soft_wrap=True)


def _study_only_in_file(options_file: Path | None) -> list[str]:
    """The study-only CTCAE options (:data:`STUDY_ONLY`) an ``--options`` file's ctcae section sets: cartlab
    ctcae does not use them. The file may be the one given to cartlab analyze, so they are named, not
    refused (``--set`` refuses them: it is written for this command)."""
    import yaml

    from cartlab._yaml import load_yaml

    if options_file is None:
        return []
    try:
        section = (load_yaml(Path(options_file).read_text(encoding="utf-8")) or {}).get("ctcae") or {}
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return []  # the file was read and checked by analysis_options already: nothing more to say here
    return [k for k in section if k in STUDY_ONLY] if isinstance(section, dict) else []


def _ctcae_options(version: str | None, units: str | None, set_options: list[str] | None,
                   options_file: Path | None, option: list[str] | None):
    """CtcaeOptions from --options FILE (its ctcae section), --set NAME=VALUE (later wins), then the
    old --option NAME=VALUE pairs and --units/--ctcae-version; returns (options, extra names)."""
    from dataclasses import fields

    from cartlab.cli.analysis import analysis_options
    from cartlab.grading.ctcae import CtcaeOptions

    sets = []
    for item in set_options or []:
        key, sep, value = item.partition("=")
        engine, dot, _ = key.strip().rpartition(".")
        if not sep or not key.strip():
            raise _usage(f"--set {item!r}: write NAME=VALUE, e.g. --set hypokalemia_symptomatic=false")
        if dot and engine.strip() != "ctcae":
            raise _usage(f"--set {item!r}: cartlab ctcae takes CTCAE options only (NAME=VALUE or ctcae.NAME=VALUE)")
        name = key.strip().rpartition(".")[2]
        if name in STUDY_ONLY:
            raise _usage(f"--set {item!r}: {name} applies to cartlab analyze (study folders); {STUDY_ONLY[name]}",
                         hint=f"options of cartlab ctcae: {_table_options()}")
        sets.append(item if dot else f"ctcae.{item.strip()}")
    kwargs: dict = {}
    extra: dict = {}
    if options_file is not None or sets:
        base = analysis_options(options_file, sets).ctcae
        if base is not None:
            kwargs = {f.name: getattr(base, f.name) for f in fields(base)}
            extra = dict(kwargs.pop("extra", None) or {})
    known = {f.name for f in fields(CtcaeOptions)} - {"extra", "version", "units"}
    for item in option or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise _usage(f"--option {item!r}: write NAME=VALUE")
        if name in STUDY_ONLY:
            raise _usage(f"--option {item!r}: {name} applies to cartlab analyze (study folders); {STUDY_ONLY[name]}",
                         hint=f"options of cartlab ctcae: {_table_options()}")
        if name in ("high_indicator", "low_indicator"):
            kwargs[name] = tuple(v.strip() for v in value.split("|") if v.strip())
        elif name in known:
            kwargs[name] = _parse_option_value(value)
        else:
            extra[name] = _parse_option_value(value)
    kwargs["version"] = version or kwargs.get("version") or "5.0"
    kwargs["units"] = units or kwargs.get("units") or "auto"
    try:
        return CtcaeOptions(**kwargs, extra=extra), extra
    except (ValueError, KeyError) as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(f"the CTCAE options: {exc}", hint=f"known options: {_table_options()}") from None
