"""Grading a plain table: cartlab ctcae."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

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
    input_csv: Annotated[Path, typer.Argument(help="CSV with term, direction, aval (+ anrlo, anrhi, base, unit, bnrind, pchg).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output CSV: the input rows plus grade and grade_reason.")],
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

    [bold]Example[/]: cartlab ctcae labs.csv --out labs_graded.csv --option hypokalemia_symptomatic=false
    """
    from dataclasses import fields

    from cartlab.grading.ctcae import OPTION_DOCS, CtcaeOptions, ctcae_command

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
    console.print(f"[green]wrote[/] {out}: {summary['rows']} rows, {summary['graded']} graded ({by}), "
                  f"{summary['not_gradable']} not gradable; criteria {', '.join(summary['criteria'])}")
    if "expected_agree" in summary:
        console.print(f"expected_grade column: {summary['expected_agree']} agree, "
                      f"{summary['expected_mismatch']} differ")
