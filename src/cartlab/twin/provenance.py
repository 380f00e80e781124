"""Provenance of a twin fit / forecast (review 38 B3, B5): the parameters' unit, status and citation
from the parameter table, the model and table versions, the forecast's assumptions, and the share of
fitted rows that were not measured (source reconstructed / synthetic / simulated)."""

from __future__ import annotations

import polars as pl

from cartlab.model import NOT_MEASURED_SOURCES

__all__ = ["NOT_MEASURED", "MAX_NOT_MEASURED_SHARE", "forecast_assumptions", "not_measured_note", "rows_by_source",
           "versions", "with_param_columns"]

#: observation ``source`` labels that are not a measurement (the project's list, cartlab.model)
NOT_MEASURED = NOT_MEASURED_SOURCES
#: a forecast whose fitted rows are more than this share not measured says so (a note, not a problem)
MAX_NOT_MEASURED_SHARE = 0.5


def with_param_columns(df: pl.DataFrame, table, column: str = "parameter") -> pl.DataFrame:
    """``df`` with ``unit``, ``status`` and ``citation`` of each row's parameter (``column``) from the
    parameter table (its YAML rows), placed after ``column``."""
    rows = {p.name: p for p in (*table.params, *table.constants.values())}
    names = df[column].to_list()
    add = [pl.Series(k, [getattr(rows[n], k) if n in rows else None for n in names], dtype=pl.String)
           for k in ("unit", "status", "citation")]
    at = df.columns.index(column) + 1
    out = df.with_columns(add)
    order = [*df.columns[:at], "unit", "status", "citation", *[c for c in df.columns[at:] if c not in
                                                                ("unit", "status", "citation")]]
    return out.select(order)


def versions(table) -> dict:
    """The model, parameter-table, clinic-rule and observation-schedule versions a fit used."""
    from importlib import resources

    from cartlab._yaml import load_yaml
    from cartlab.twin.observe import MODEL_VERSION

    def version(folder: str, name: str) -> str:
        doc = load_yaml(resources.files("cartlab.twin").joinpath(folder, f"{name}.yaml").read_text(encoding="utf-8"))
        return str(doc.get("version", ""))

    return {"version": MODEL_VERSION, "params": table.name, "params_version": table.version,
            "clinic": "clinic_v1", "clinic_version": version("criteria", "clinic_v1"),
            # the acceptance targets the twin's population was checked against (docs/twin_trials.md); the fit
            # itself uses the parameter table's priors, not these targets
            "targets": "cd7_v1", "targets_version": version("targets", "cd7_v1"),
            "observation_model": "cartlab.twin.fit.OBS_MODEL"}


def forecast_assumptions(from_day: float) -> list[str]:
    """What a forecast from ``from_day`` assumes (docs/twin.md "Forecasts")."""
    d = f"{from_day:g}"
    return [f"the twin is fitted to the observations up to day {d} only",
            f"the clinic rule clinic_v1 decides tocilizumab, steroids, vasopressors and transfusions on day {d} and "
            f"after day {d}; the interventions recorded before day {d} act in the twin and count toward the rule's "
            "limits (the tocilizumab doses already given, review 47 A1)",
            f"recorded interventions after day {d} are not used (the forecast must not know them; one on day {d} "
            "itself neither: the rule decides that day)",
            "seed anchors are never used in a forecast",
            "intervals are those of the noise-free course over the posterior (parameter uncertainty), "
            "not of new measurements (which scatter more, by the observation noise)"]


def rows_by_source(obs: pl.DataFrame) -> dict[str, int]:
    """Fitted rows per ``source`` label (missing source: "(none)")."""
    if "source" not in obs.columns or obs.height == 0:
        return {"(none)": obs.height} if obs.height else {}
    c = obs.select(pl.col("source").cast(pl.String).fill_null("(none)")).to_series().value_counts(sort=True)
    return {str(k): int(v) for k, v in c.iter_rows()}


def not_measured_note(obs: pl.DataFrame, max_share: float = MAX_NOT_MEASURED_SHARE) -> str | None:
    """``not_measured_data: ...`` when more than ``max_share`` of the fitted rows have a source in
    :data:`NOT_MEASURED` (a note: not by itself a reason to call the forecast unreliable), else None."""
    counts = rows_by_source(obs)
    total = sum(counts.values())
    nm = sum(v for k, v in counts.items() if k in NOT_MEASURED)
    if total == 0 or not nm / total > max_share:
        return None
    by = ", ".join(f"{k} {v}" for k, v in counts.items())
    return (f"not_measured_data: {nm} of {total} fitted rows are not measured (source {by}): the fit and forecast "
            "rest mostly on reconstructed/generated values (a note, not by itself a reason to call the forecast "
            "unreliable)")


def data_sources(df: pl.DataFrame, obs: pl.DataFrame, column: str | None = "param") -> pl.DataFrame:
    """``df`` with ``data_sources`` in place of a ``source`` column: the subject's fitted rows counted by
    their ``source`` ("reconstructed 5, paper 1"), per ``column`` value (a fit-quality row: that param's
    rows) or, with ``column=None``, all rows (identifiability: every row informs every parameter). These
    are statistics of the subject's own rows, not simulated values (review 40 C1)."""
    df = df.drop("source") if "source" in df.columns else df
    if "source" not in obs.columns or "param" not in obs.columns or (column is not None and column not in df.columns):
        return df.with_columns(pl.lit(None, pl.String).alias("data_sources"))
    keys = ["param"] if column is not None else []
    counts = (obs.with_columns(pl.col("source").fill_null("(no source)")).group_by(*keys, "source").len()
              .sort([*keys, "len", "source"], descending=[*[False] * len(keys), True, False]))
    text = pl.format("{} {}", pl.col("source"), pl.col("len")).str.join(", ").alias("data_sources")
    if column is None:
        return df.with_columns(pl.lit(counts.select(text).item() if counts.height else None, pl.String)
                               .alias("data_sources"))
    counts = counts.group_by("param", maintain_order=True).agg(text)
    return df.join(counts.rename({"param": column}), on=column, how="left")
