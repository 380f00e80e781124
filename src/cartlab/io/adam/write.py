"""Writing ADaM datasets: SAS transport v5 (pyreadstat), CSV, Parquet, a define-like CSV and a
Define-XML 2.0 skeleton (standard library ``xml.etree``).

Every value of a text variable is made ASCII (typographic signs spelled out: ``≤`` -> ``<=``,
``°`` -> ``deg`` ...; accents dropped; anything else ``?``) and cut to 200 characters (``...`` at
the end) *before* any file is written, so the XPT, CSV and Parquet files hold the same values. The
XPT v5 limits (names <= 8, labels <= 40, text <= 200 bytes) are checked by the spec loader and here.

The Define-XML is a *skeleton*: ItemGroupDef / ItemDef / MethodDef / def:leaf with the ODM 1.3.2 and
Define-XML 2.0 namespaces, not validated against the CDISC schema and without codelists or
value-level metadata.
"""

from __future__ import annotations

import datetime as _dt
import xml.etree.ElementTree as ET
from pathlib import Path

import polars as pl

from cartlab.errors import InputError
from cartlab.io.adam.spec import MAX_TEXT, AdamDataset, AdamSpec

__all__ = ["ASCII_MAP", "conform", "define_table", "write_define_xml", "write_xpt"]

#: non-ASCII signs and their ASCII spelling (applied before accents are stripped)
ASCII_MAP = {"≤": "<=", "≥": ">=", "°": "deg", "µ": "u", "μ": "u", "–": "-", "—": "-", "→": "->", "←": "<-",
             "×": "x", "’": "'", "‘": "'", "“": '"', "”": '"', "…": "...", "±": "+/-", "²": "2", "³": "3",
             "⁹": "9", "·": ".", "≠": "!=", "α": "alpha", "β": "beta", "γ": "gamma", "Δ": "delta", "κ": "kappa"}

_POLARS = {"text": pl.String, "integer": pl.Int64, "float": pl.Float64}


def ascii_text(expr: pl.Expr) -> pl.Expr:
    """ASCII, at most 200 characters (longer: the first 197 and ``...``)."""
    for k, v in ASCII_MAP.items():
        expr = expr.str.replace_all(k, v, literal=True)
    expr = expr.str.normalize("NFKD").str.replace_all(r"[\u0300-\u036f]", "").str.replace_all(r"[^\x00-\x7F]", "?")
    return pl.when(expr.str.len_chars() > MAX_TEXT).then(expr.str.slice(0, MAX_TEXT - 3) + pl.lit("...")).otherwise(expr)


def conform(frame: pl.DataFrame, ds: AdamDataset) -> pl.DataFrame:
    """The spec's variables in the spec's order and types; columns not in the spec are left out (a user's
    spec may drop variables); a spec variable cartlab does not derive is an :class:`InputError`."""
    missing = [v.name for v in ds.variables if v.name not in frame.columns]
    if missing:
        raise InputError(f"ADaM spec, dataset {ds.name}: cartlab derives no variable {', '.join(missing)} "
                         f"(derived: {', '.join(frame.columns)})")
    cols = []
    for v in ds.variables:
        c = pl.col(v.name).cast(_POLARS[v.type], strict=True)
        cols.append((ascii_text(c) if v.type == "text" else c).alias(v.name))
    return frame.select(cols)


def lengths(frame: pl.DataFrame, ds: AdamDataset) -> dict[str, int]:
    """SAS lengths: 8 for numbers, the longest value (at least 1) for text."""
    out = {}
    for v in ds.variables:
        if v.type == "text":
            n = frame[v.name].str.len_bytes().max() if frame.height else None
            out[v.name] = max(int(n or 0), 1)
        else:
            out[v.name] = 8
    return out


def write_xpt(frame: pl.DataFrame, ds: AdamDataset, path: Path) -> None:
    """One dataset as SAS transport v5 (table name = dataset name, labels and DATE9./DATETIME20.
    formats from the spec); numbers are written as doubles, missing as SAS missing."""
    import pyreadstat

    too_long = [v.name for v in ds.variables if v.type == "text" and frame.height
                and (frame[v.name].str.len_bytes().max() or 0) > MAX_TEXT]
    if too_long:  # conform() cuts every text; this guards a frame that did not go through it
        raise InputError(f"{ds.name}: text longer than {MAX_TEXT} bytes in {', '.join(too_long)}")
    pdf = frame.with_columns(pl.col(v.name).cast(pl.Float64) for v in ds.variables if v.type != "text").to_pandas()
    pyreadstat.write_xport(
        pdf, str(path), file_label=ds.label, table_name=ds.name, file_format_version=5,
        column_labels={v.name: v.label for v in ds.variables},
        variable_format={v.name: v.format for v in ds.variables if v.format},
    )


def define_table(spec: AdamSpec, frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The define-like table: one row per variable of every dataset written."""
    rows = []
    for name, frame in frames.items():
        ds = spec.datasets[name]
        lens = lengths(frame, ds)
        for i, v in enumerate(ds.variables, 1):
            c = spec.citations.get(v.cite)
            c = c if isinstance(c, dict) else {"text": str(c)}
            rows.append({
                "dataset": name, "dataset_label": ds.label, "order": i, "variable": v.name, "label": v.label,
                "type": v.sas_type, "datatype": v.type, "length": lens[v.name], "format": v.format or "",
                "origin": v.origin, "derivation": v.derivation,
                "key_sequence": ds.keys.index(v.name) + 1 if v.name in ds.keys else None,
                "citation": c.get("url") or c.get("text") or v.cite, "status": v.status, "rows": frame.height,
            })
    return pl.DataFrame(rows, schema={"dataset": pl.String, "dataset_label": pl.String, "order": pl.Int64,
                                      "variable": pl.String, "label": pl.String, "type": pl.String,
                                      "datatype": pl.String, "length": pl.Int64, "format": pl.String,
                                      "origin": pl.String, "derivation": pl.String, "key_sequence": pl.Int64,
                                      "citation": pl.String, "status": pl.String, "rows": pl.Int64})


ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.0"
XLINK = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"


def _desc(parent: ET.Element, text: str) -> None:
    d = ET.SubElement(parent, f"{{{ODM}}}Description")
    ET.SubElement(d, f"{{{ODM}}}TranslatedText", {XML_LANG: "en"}).text = text


def _ascii(text: str) -> str:
    """``text`` as the datasets write STUDYID (:func:`ascii_text`)."""
    return pl.select(ascii_text(pl.lit(text, dtype=pl.String))).item()


def write_define_xml(spec: AdamSpec, define: pl.DataFrame, study_id: str, path: Path) -> None:
    """A Define-XML 2.0 *skeleton* of the datasets in ``define`` (see the module docstring); the study
    is named as the datasets' STUDYID is written (ASCII)."""
    study_id = _ascii(study_id)
    ET.register_namespace("", ODM)
    ET.register_namespace("def", DEF)
    ET.register_namespace("xlink", XLINK)
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()
    odm = ET.Element(f"{{{ODM}}}ODM", {"FileType": "Snapshot", "FileOID": f"DEF.{study_id}.ADAM", "ODMVersion": "1.3.2",
                                       "CreationDateTime": now, "Originator": "cartlab",
                                       "SourceSystem": "cartlab.io.adam", f"{{{DEF}}}Context": "Submission"})
    study = ET.SubElement(odm, f"{{{ODM}}}Study", {"OID": f"STDY.{study_id}"})
    gv = ET.SubElement(study, f"{{{ODM}}}GlobalVariables")
    ET.SubElement(gv, f"{{{ODM}}}StudyName").text = study_id
    ET.SubElement(gv, f"{{{ODM}}}StudyDescription").text = f"cartlab ADaM export of {study_id} (not a validated define.xml)"
    ET.SubElement(gv, f"{{{ODM}}}ProtocolName").text = study_id
    mdv = ET.SubElement(study, f"{{{ODM}}}MetaDataVersion", {
        "OID": "MDV.CARTLAB.ADAM", "Name": "cartlab ADaM", f"{{{DEF}}}DefineVersion": "2.0.0",
        f"{{{DEF}}}StandardName": "ADaM-IG", f"{{{DEF}}}StandardVersion": "1.3"})
    items, methods = [], []
    for name in define["dataset"].unique(maintain_order=True).to_list():
        ds = spec.datasets[name]
        rows = define.filter(pl.col("dataset") == name)
        ig = ET.SubElement(mdv, f"{{{ODM}}}ItemGroupDef", {
            "OID": f"IG.{name}", "Name": name, "Repeating": "No" if name == "ADSL" else "Yes",
            "IsReferenceData": "No", "SASDatasetName": name, "Purpose": "Analysis",
            f"{{{DEF}}}Structure": ds.structure, f"{{{DEF}}}Class": ds.klass,
            f"{{{DEF}}}ArchiveLocationID": f"LF.{name}"})
        _desc(ig, ds.label)
        for r in rows.iter_rows(named=True):
            oid = f"IT.{name}.{r['variable']}"
            attrs = {"ItemOID": oid, "OrderNumber": str(r["order"]), "Mandatory": "Yes" if r["key_sequence"] else "No"}
            if r["key_sequence"]:
                attrs["KeySequence"] = str(r["key_sequence"])
            if r["origin"] == "Derived":
                attrs["MethodOID"] = f"MT.{name}.{r['variable']}"
                methods.append((attrs["MethodOID"], f"{name}.{r['variable']}", r["derivation"]))
            ET.SubElement(ig, f"{{{ODM}}}ItemRef", attrs)
            items.append((oid, r))
        leaf = ET.SubElement(ig, f"{{{DEF}}}leaf", {"ID": f"LF.{name}", f"{{{XLINK}}}href": f"{name.lower()}.xpt"})
        ET.SubElement(leaf, f"{{{DEF}}}title").text = f"{name.lower()}.xpt"
    for oid, r in items:
        attrs = {"OID": oid, "Name": r["variable"], "DataType": r["datatype"], "Length": str(r["length"]),
                 "SASFieldName": r["variable"]}
        if r["format"]:
            attrs[f"{{{DEF}}}DisplayFormat"] = r["format"]
        it = ET.SubElement(mdv, f"{{{ODM}}}ItemDef", attrs)
        _desc(it, r["label"])
        origin = ET.SubElement(it, f"{{{DEF}}}Origin", {"Type": "CRF" if r["origin"] == "Collected" else r["origin"]})
        if r["origin"] != "Derived":
            _desc(origin, r["derivation"])
    for oid, name, text in methods:
        m = ET.SubElement(mdv, f"{{{ODM}}}MethodDef", {"OID": oid, "Name": f"Algorithm to derive {name}",
                                                      "Type": "Computation"})
        _desc(m, text)
    tree = ET.ElementTree(odm)
    ET.indent(tree)
    tree.write(path, encoding="UTF-8", xml_declaration=True)
