"""Grading a plain table: cartlab ctcae."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from cartlab.cli.base import (
    _check_file,
    _progress,
    _usage,
    app,
    console,
)
from cartlab.errors import CartlabError


def _parse_option_value(text: str):
    low = text.strip().lower()
    if low in ("true", "yes", "1"):
        return True
    if low in ("false", "no", "0"):
        return False
    return text.strip()


@app.command("ctcae")
def ctcae_cmd(
    input_csv: Annotated[Optional[Path], typer.Argument(
        help="CSV with term (a CTCAE term, or a parameter: ANC, PLT, Hb, NEUT ...), direction (L/H, low/high), "
        "aval (+ anrlo, anrhi, base, unit, bnrind, pchg).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Output CSV: the input rows plus grade and grade_reason.")] = None,
    list_terms: Annotated[bool, typer.Option("--list-terms", help="List the terms, directions, parameters and units "
                                             "the criteria grade, and exit.")] = False,
    units: Annotated[str, typer.Option("--units", help="Criteria unit system: SI, US or auto (by each row's unit).")] = "auto",
    version: Annotated[str, typer.Option("--version", help="CTCAE version of the criteria tables.")] = "5.0",
    option: Annotated[Optional[list[str]], typer.Option(
        "--option", help="An ambiguous-criterion option as NAME=VALUE (repeatable), e.g. "
        "hypokalemia_symptomatic=false; see cartlab.grading.ctcae.OPTION_DOCS.")] = None,
) -> None:
    """Grade a plain lab table with CTCAE (v5.0 default; SI and US conventional units).

    Every input column is kept, in the same row order; [bold]grade[/] (0-4, empty = cannot be graded)
    and [bold]grade_reason[/] (the rule in words and its criteria id) are added. Ambiguous criteria
    follow admiral's (worst-case) reading by default; change them with --option.

    [bold]term[/]: a CTCAE term ("Neutrophil count decreased"), or a parameter as users write it — a
    cartlab code (NEUT, PLAT, HGB ...) or an alias (ANC, PLT, Hb, Na, Cr, ALT ...); a parameter's value is
    converted from its unit (/uL, mg/dL ...) to the criteria's. [bold]direction[/]: L or H (low, high,
    decreased, increased). cartlab ctcae --list-terms shows every term.

    [bold]Example[/]: cartlab ctcae labs.csv --out labs_graded.csv --option hypokalemia_symptomatic=false
    """
    from dataclasses import fields

    from cartlab.cli.grading_io import ctcae_command
    from cartlab.grading.ctcae import OPTION_DOCS, CtcaeOptions, ctcae_terms

    if list_terms:
        terms = ctcae_terms(version, units)
        t = Table(title=f"CTCAE {version} terms ({units} units)", header_style="bold")
        for c in ("term", "direction", "params", "unit", "table"):
            t.add_column(c, overflow="fold")
        for r in terms.iter_rows():
            t.add_row(*[x or "" for x in r])
        console.print(t)
        return
    if input_csv is None or out is None:
        raise _usage("give the INPUT_CSV and --out OUT (or --list-terms)")
    _check_file(input_csv)
    known = {f.name for f in fields(CtcaeOptions)} - {"extra", "version", "units"}
    kwargs: dict = {"version": version, "units": units}
    extra: dict = {}
    for item in option or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise _usage(f"--option {item!r}: write NAME=VALUE")
        if name in ("high_indicator", "low_indicator"):
            kwargs[name] = tuple(v.strip() for v in value.split("|") if v.strip())
        elif name in known:
            kwargs[name] = _parse_option_value(value)
        else:
            extra[name] = _parse_option_value(value)
    try:
        opts = CtcaeOptions(**kwargs, extra=extra)
        with _progress(f"grading {input_csv.name}") as step:
            step("CTCAE")
            summary = ctcae_command(input_csv, out, options=opts)
    except (ValueError, KeyError) as exc:
        if isinstance(exc, CartlabError):
            raise
        raise _usage(f"{input_csv}: {exc}", hint=f"known options: {', '.join(sorted(OPTION_DOCS))}"
                     if extra else None) from None
    by = ", ".join(f"grade {g}: {n}" for g, n in sorted(summary["by_grade"].items()))
    console.print(f"[green]wrote[/] {out}: {summary['rows']} rows, {summary['graded']} graded{f' ({by})' if by else ''}, "
                  f"{summary['not_gradable']} not gradable; criteria {', '.join(summary['criteria'])}")
    if summary.get("unknown_terms"):
        console.print(f"[yellow]not CTCAE terms or known parameters:[/] {', '.join(summary['unknown_terms'][:20])} "
                      "(cartlab ctcae --list-terms lists the terms)", soft_wrap=True)
    if "expected_agree" in summary:
        console.print(f"expected_grade column: {summary['expected_agree']} agree, "
                      f"{summary['expected_mismatch']} differ")
