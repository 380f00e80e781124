"""SDTM terms the mapping tables do not name: never a silent loss (review 46).

* :func:`indication`: CMINDC -> ``interventions.indication`` through the mapping's ``indications``
  table, then its ``indication_prefixes`` (``CYTOKINE RELEASE SYNDROME GRADE 3`` is CRS); a text in
  neither is read by the option ``unknown_indication``: ``count`` (default: the indication is left
  empty, which the study format counts toward CRS, "interventions ... whose indication ... is empty or
  CRS count") or ``other`` (it does not count). The text is kept in ``source_note`` either way, and
  :func:`warn_indications` names the texts with their counts.
* :func:`warn_unread`: one warning per event or CM file naming the terms not in the mapping, with their
  counts (the FHIR reader's ``unmapped_codes`` rule, as the findings domains already have).
"""

from __future__ import annotations

import polars as pl

from cartlab.io.sdtm.common import Ctx
from cartlab.io.sdtm.files import ROW, DomainFile

#: source_note of a CM record whose CMINDC is in neither indications table, per option value
INDICATION_NOTE = {
    "count": "CMINDC '{}' not in the indications table: read as not given",
    "other": "CMINDC '{}' not in the indications table: read as other (option unknown_indication = other)",
}


def _indc(cm: DomainFile) -> pl.Expr:
    e = cm.text("CMINDC").str.to_uppercase().str.replace_all(r"\s+", " ").str.strip_chars()
    return pl.when(e != "").then(e)


def _known(cm: DomainFile, ctx: Ctx) -> tuple[pl.Expr, pl.Expr]:
    """(the indication from the exact table, else from the longest matching prefix; the prefix matched)."""
    m = ctx.mapping
    indc = _indc(cm)
    exact = indc.replace_strict(m.indications, default=None, return_dtype=pl.String)
    pre_val, pre_key = pl.lit(None, dtype=pl.String), pl.lit(None, dtype=pl.String)
    for p in sorted(m.indication_prefixes, key=len, reverse=True):  # the longest prefix first
        # the prefix as a whole word: CRS, CRS GRADE 3, CRS-RELATED, not CRSX
        hit = indc.str.starts_with(p) & ((indc.str.len_chars() == len(p))
                                         | ~indc.str.slice(len(p), 1).str.contains("[A-Z0-9]"))
        pre_val = pl.when(pre_val.is_null() & hit).then(pl.lit(m.indication_prefixes[p])).otherwise(pre_val)
        pre_key = pl.when(pre_key.is_null() & hit).then(pl.lit(p)).otherwise(pre_key)
    return pl.coalesce(exact, pre_val), pl.when(exact.is_null()).then(pre_key)


def indication(cm: DomainFile, ctx: Ctx) -> tuple[pl.Expr, pl.Expr]:
    """(``indication``, the note for ``source_note``) of a CM record."""
    indc = _indc(cm)
    known, prefix = _known(cm, ctx)
    unknown = indc.is_not_null() & known.is_null()
    opt = ctx.unknown_indication
    value = pl.when(unknown).then(pl.lit("other" if opt == "other" else None, dtype=pl.String)).otherwise(known)
    note = (pl.when(unknown).then(pl.format(INDICATION_NOTE[opt], indc))
            .when(prefix.is_not_null()).then(pl.format("CMINDC '{}' read as {} (indication_prefixes: {})", indc, known,
                                                       prefix)))
    return value, note


def warn_indications(cm: DomainFile, df: pl.DataFrame, ctx: Ctx) -> None:
    """One warning per CM file listing the CMINDC texts of the mapped records that are in neither
    indications table, with their counts, and how they were read."""
    from cartlab.io.sdtm.reader import SdtmIssue

    if not cm.has("CMINDC"):
        return
    known, _ = _known(cm, ctx)
    bad = df.filter(pl.col("__reason").is_null()).select(_indc(cm).alias("__i"), known.alias("__k"), pl.col(ROW)).filter(
        pl.col("__i").is_not_null() & pl.col("__k").is_null())
    if not bad.height:
        return
    counts = bad.group_by("__i").agg(pl.len()).sort(["len", "__i"], descending=[True, False])
    what = ", ".join(f"{t} ({n})" for t, n in counts.rows()[:10]) + (" ..." if counts.height > 10 else "")
    how = ("read as not given (indication left empty, which the study format counts toward CRS; "
           "option unknown_indication = other reads them as other, which does not count)"
           if ctx.unknown_indication == "count" else
           "read as other (option unknown_indication = other), so they do not count toward CRS; the default, "
           "count, leaves the indication empty")
    ctx.warnings.append(SdtmIssue(
        cm.name, "CMINDC", f"{bad.height:,} CM record(s) with a CMINDC not in the indications table: {what}; {how}; "
        "map each text in the indications table of a mapping file (CRS, ICANS, infection or other); the text is kept "
        "in source_note", bad[ROW].to_list(), "warning"))


#: terms that make an unread AE/CE record worth naming first (transplant, seizure, oedema; the Nervous system SOC)
def warn_unread(dfile: DomainFile, df: pl.DataFrame, ctx: Ctx, reason: str, terms: list[str], what: str,
                table: str) -> None:
    """One warning per file naming the terms of the records whose ``__reason`` is ``reason`` (not in
    the mapping), with their counts: the first non-empty of the variables ``terms`` (DECOD before TERM).
    Terms with a word of the mapping's ``salient_words`` (transplant, seizure, oedema, Nervous system SOC
    in --BODSYS ...) are named first."""
    from cartlab.io.sdtm.reader import SdtmIssue

    dom = dfile.domain
    present = [v for v in terms if dfile.has(v)]
    if not present:
        return
    term = pl.coalesce([dfile.text(v).str.strip_chars().replace("", None) for v in present]).fill_null("(empty)")
    soc = dfile.text(f"{dom}BODSYS").str.to_uppercase().fill_null("")
    bad = df.filter(pl.col("__reason") == reason).select(term.alias("__t"), pl.col(ROW), soc.alias("__soc"))
    if not bad.height:
        return
    words = ctx.mapping.salient_words  # the mapping's salient_words (sdtm_map.yaml)
    hit = pl.lit(False)
    for w in words:
        hit = hit | pl.col("__t").str.to_uppercase().str.contains(w, literal=True) | pl.col("__soc").str.contains(
            w, literal=True)
    counts = bad.with_columns(hit.alias("__s")).group_by("__t").agg(
        pl.len(), pl.col("__s").any()).sort(["__s", "len", "__t"], descending=[True, True, False])
    shown = ", ".join(f"{t} ({n})" for t, n, _ in counts.rows()[:10]) + (" ..." if counts.height > 10 else "")
    salient = counts.filter(pl.col("__s"))["__t"].to_list()
    events = ", ".join(dict.fromkeys(words.values()))
    flag = (f"; among them {', '.join(salient[:10])}: a term that may be an event ({events}; the mapping's "
            "salient_words) (check it)" if salient else "")
    ctx.warnings.append(SdtmIssue(
        dfile.name, present[0], f"{bad.height:,} {dom} record(s) with a {what} not in the mapping were not read: "
        f"{shown}{flag}; add the term to the {table} table of a mapping file if it is one",
        bad[ROW].to_list(), "warning"))
