"""The mapping report: every record read, counted as mapped (to which table and param) or skipped
(and why), per domain file and test code / term."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from cartlab.io.atomic import atomic_file

REPORT_SCHEMA = {
    "domain": pl.String, "file": pl.String, "code": pl.String, "target": pl.String,
    "n_rows": pl.Int64, "n_mapped": pl.Int64, "n_skipped": pl.Int64, "reason": pl.String,
}


#: a record is mapped when it has no reason, or a reason that says how it was mapped ("mapped: ...")
_mapped = pl.col("reason").is_null() | pl.col("reason").str.starts_with("mapped")


def summarise(domain: str, file: str, st: pl.DataFrame) -> pl.DataFrame:
    """One row per (code, target, reason) of a file's per-record status."""
    if st.height == 0:
        return pl.DataFrame(schema=REPORT_SCHEMA)
    g = st.group_by("code", "target", "reason", maintain_order=True).agg(pl.len().cast(pl.Int64).alias("n_rows"))
    return g.select(
        pl.lit(domain).alias("domain"), pl.lit(file).alias("file"), "code", "target", "n_rows",
        pl.when(_mapped).then(pl.col("n_rows")).otherwise(0).alias("n_mapped"),
        pl.when(_mapped).then(0).otherwise(pl.col("n_rows")).alias("n_skipped"),
        pl.col("reason").fill_null("mapped"),
    ).cast(REPORT_SCHEMA).sort("domain", "code", "reason", nulls_last=True)


def markdown_summary(report: pl.DataFrame) -> str:
    """A short summary: per file the records read, mapped and skipped, and the main skip reasons."""
    lines = ["# SDTM mapping report", "", "| file | records | mapped | skipped |", "|---|---:|---:|---:|"]
    per = report.group_by("file", maintain_order=True).agg(pl.col("n_rows").sum(), pl.col("n_mapped").sum(),
                                                           pl.col("n_skipped").sum())
    for f, n, mp, sk in per.iter_rows():
        lines.append(f"| {f} | {n:,} | {mp:,} | {sk:,} |")
    skipped = (report.filter(pl.col("n_skipped") > 0).group_by("file", "reason")
               .agg(pl.col("n_skipped").sum(), pl.col("code").unique().sort().head(8).str.join(", "))
               .sort("n_skipped", descending=True))
    if skipped.height:
        lines += ["", "## Skipped records by reason", "", "| file | reason | records | codes (first 8) |",
                  "|---|---|---:|---|"]
        for f, why, n, codes in skipped.iter_rows():
            lines.append(f"| {f} | {why} | {n:,} | {codes or ''} |")
    return "\n".join(lines) + "\n"


def write_mapping_report(report: pl.DataFrame, path: str | Path) -> tuple[Path, Path]:
    """Write the report as CSV at ``path`` and a markdown summary beside it (``.md``); atomic."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path / "sdtm_mapping_report.csv" if path.suffix == "" else path.with_suffix(".csv")
    md = path.with_suffix(".md")
    with atomic_file(path) as tmp:
        report.write_csv(tmp)
    with atomic_file(md) as tmp:
        tmp.write_text(markdown_summary(report), encoding="utf-8")
    return path, md
