"""The oxygen and support inputs of the older CRS scales (Lee 2014, Penn, CARTOX, MSKCC).

Moved from :mod:`cartlab.grading.crs_legacy_inputs` (session 40). An oxygen row recorded at 0 L/min
by a flow device (blow-by, nasal cannula, high-flow nasal cannula, face mask, non-rebreather,
Venturi; FiO2 empty or 0.21) is no oxygen given: it is not "supplemental oxygen" (Penn), "O2
requirement" (Lee 2014 / CARTOX / MSKCC) on any scale, as in the ASTCT engine (convention
``crs.conv.zero_flow_oxygen`` of astct_crs_2019.yaml, review 40 B1); :func:`zero_flow_notes` names
such rows on the days they cover ("flow 0 L/min: not counted").
"""

from __future__ import annotations

import polars as pl

from cartlab.grading.common import expand_days, last_covered_day
from cartlab.grading.crs_episodes import ZERO_FLOW_TEXT
from cartlab.grading.crs_features import counted, norm_text, zero_flow_oxygen
from cartlab.provenance import evidence_ref

KEY = ["subject_id", "day"]
#: the evidence items' schema
_EV = {"subject_id": pl.String, "day": pl.Int64, "item": pl.String}


def _floor(col: str) -> pl.Expr:
    return pl.col(col).floor().cast(pl.Int64)


def _items(frame: pl.DataFrame, group: str, ref: str, *keep: str) -> pl.DataFrame:
    """Evidence items ``"<group>|<ref>"`` of a frame's rows, in its order (rows without a reference
    give none). Each source lists its items in the order the features record them within a day."""
    return frame.filter(pl.col(ref).is_not_null() & (pl.col(ref) != "")).select(
        "subject_id", "day", pl.concat_str(pl.lit(f"{group}|"), pl.col(ref)).alias("item"), *keep).cast(_EV)


def support_days(iv: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Per day covered by an oxygen, coagulopathy or IV-therapy row: oxygen features, blood
    products, IV therapy, ``iv_route_cats`` (categories of the day's rows whose route decides "IV
    therapy", review 45); and the evidence items of those rows. An oxygen row at 0 L/min by a flow
    device gives no oxygen (crs.conv.zero_flow_oxygen): left out here, named by :func:`zero_flow_notes`."""
    iv = iv.filter(~zero_flow_oxygen(iv.columns))
    rows = iv.filter((pl.col("cat") == "oxygen") | pl.col("is_coag") | pl.col("is_iv") | pl.col("iv_route")).with_columns(
        pl.int_ranges(_floor("start_day"), last_covered_day(iv) + 1)  # an end at 00:00: the day before (review 38 A1)
        .alias("day")).explode("day").drop_nulls("day")
    o2 = pl.col("cat") == "oxygen"
    device = pl.col("o2_device")
    norm_device = norm_text(device).str.replace_all(" ", "_", literal=True)
    fio2 = pl.col("fio2").filter(o2)
    n_o2, n_fio2 = o2.sum(), fio2.count()
    devices = norm_device.filter(o2 & device.is_not_null() & (device != "")).unique().sort()
    days = rows.group_by(KEY).agg(
        (n_o2 > 0).alias("o2_any"), devices.alias("o2_devices"),
        pl.col("o2_flow_lpm").filter(o2).max().alias("o2_flow_max_lpm"),
        pl.when(n_o2 == 0).then(0.21).when(n_fio2 > 0).then(fio2.max()).otherwise(0.21).alias("fio2_min"),
        pl.when(n_o2 == 0).then(0.21).when(n_fio2 == n_o2).then(fio2.max()).otherwise(1.0).alias("fio2_max"),
        ((n_o2 > 0) & (n_fio2 < n_o2)).alias("fio2_unknown"),
        pl.col("is_coag").any().alias("blood_products"), pl.col("is_iv").any().alias("iv_therapy"),
        pl.col("cat").filter(pl.col("iv_route")).unique().sort().alias("iv_route_cats"))
    vent = (pl.when(pl.col("o2_devices").list.contains("mechanical_ventilation")).then(2)
            .when(pl.col("o2_devices").list.contains("cpap") | pl.col("o2_devices").list.contains("bipap")).then(1)
            .otherwise(0).cast(pl.Int64))
    items = pl.concat([  # per row: its oxygen / blood-product item, then its IV-therapy item
        _items(rows.filter(o2).with_columns(pl.lit(0).alias("k")), "o2", "ref", "i", "k"),
        _items(rows.filter(pl.col("is_coag")).with_columns(pl.lit(0).alias("k")), "blood_products", "ref", "i", "k"),
        _items(rows.filter(pl.col("is_iv") | pl.col("iv_route")).with_columns(pl.lit(1).alias("k")), "iv_therapy", "ref",
               "i", "k"),
    ]).sort(*KEY, "i", "k").drop("i", "k")
    return days.with_columns(vent.alias("ventilation_level")), items


def zero_flow_notes(interventions: pl.DataFrame, indications, count_empty: bool = True) -> pl.DataFrame:
    """(subject_id, day, zero_flow_note): per day, the oxygen rows counted toward CRS (their
    indication) that :func:`support_days` leaves out, each named with its row."""
    rows = interventions.filter(zero_flow_oxygen(interventions.columns) & pl.col("start_day").is_not_null()
                                & counted("indication", indications, count_empty).fill_null(False))
    if rows.height == 0:
        return pl.DataFrame(schema={"subject_id": pl.String, "day": pl.Int64, "zero_flow_note": pl.String})
    txt = pl.format("oxygen {} ({}) {}", pl.col("o2_device"), evidence_ref().fill_null("row not given"), pl.lit(ZERO_FLOW_TEXT))
    return (expand_days(rows.with_columns(txt.alias("_txt"))).group_by("subject_id", "d", maintain_order=True)
            .agg(pl.col("_txt").unique(maintain_order=True).str.join("; ").alias("zero_flow_note"))
            .select("subject_id", pl.col("d").cast(pl.Int64).alias("day"), "zero_flow_note"))
