"""``cartlab delete STUDY_ID``: remove a stored study (review 40 B4), in one transaction, with ``--yes``.

The grammar of ``import`` / ``list``: the store is ``--store FILE`` (default cartlab.duckdb), the study its
stored id. Only the store changes: the study's source files and any mapping report beside the store stay.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cartlab.cli.base import DEFAULT_STORE_PATH, StoreOpt, _usage, app, console
from cartlab.cli.grammar import study_argument

#: delete's STUDY: the id of a stored study only (a folder is not deleted, nor looked up)
DeleteStudyArg = study_argument("The id of the stored study to remove (cartlab list). The same as --study STUDY.",
                                option_help="The id of the stored study to remove (cartlab list); not a folder.")


@app.command("delete")
def delete_cmd(
    study_id: DeleteStudyArg,
    store: StoreOpt = DEFAULT_STORE_PATH,
    yes: Annotated[bool, typer.Option(
        "--yes", help="Delete without asking (needed when the input is not a terminal, e.g. a script).")] = False,
) -> None:
    """Remove a study from the store (its rows, source files list, warnings and reader options; one transaction).

    The study's own files are not touched. Without --yes the command asks, and refuses when it cannot ask.

    [bold]Example[/]: cartlab delete TRIAL-01 --store trial.duckdb --yes
    """
    import polars as pl

    from cartlab.store import Store
    from cartlab.store.duckdb_store import check_store_path

    if not check_store_path(store):
        raise _usage(f"no store at {store}", hint="give --store the store's file (cartlab list --store FILE)")
    with Store(store, read_only=True) as s:
        studies = s.studies()
    row = studies.filter(pl.col("study_id") == study_id)
    if row.height == 0:
        raise _usage(f"no study {study_id!r} in {store} (studies: {', '.join(studies['study_id']) or 'none'})",
                     hint=f"cartlab list --store {store} lists them")
    r = row.row(0, named=True)
    what = (f"{study_id} ({r['n_subjects']:,} subjects, imported from {r['folder'] or 'an in-memory study'} at "
            f"{str(r['imported_at'])[:16]} UTC)")
    if not yes:
        if not sys.stdin.isatty():
            raise _usage(f"delete {what} from {store}: give --yes to confirm (the input is not a terminal to ask)")
        if not typer.confirm(f"delete {what} from {store}?", default=False):
            console.print("nothing deleted")
            raise typer.Exit(1)
    with Store(Path(store)) as s:
        s.delete_study(study_id)
    console.print(f"[green]deleted[/] {what} from {store}", soft_wrap=True, highlight=False)
