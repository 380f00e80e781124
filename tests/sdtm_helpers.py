"""SDTM test helpers shared by the session-38 SDTM tests: a one-subject SDTM folder (DM, EX with the CAR-T
on 2021-05-10 = day 0) and readers of its warnings and deaths."""

from __future__ import annotations

from pathlib import Path

import polars as pl

DM = ("STUDYID,DOMAIN,USUBJID,RFSTDTC,RFXSTDTC,RFPENDTC,AGE,AGEU,SEX,DTHFL,DTHDTC\n"
      "S,DM,P1,2021-05-10,2021-05-05,2021-09-09,40,YEARS,M,{fl},{dth}\n")
EX = ("STUDYID,DOMAIN,USUBJID,EXSEQ,EXTRT,EXDOSE,EXDOSU,EXSTDTC\n"
      "S,EX,P1,1,FLUDARABINE,30,MG/M2,2021-05-05\nS,EX,P1,2,CAR-T,1000000,CELLS/KG,2021-05-10\n")
LBH = "STUDYID,DOMAIN,USUBJID,LBSEQ,LBTESTCD,LBSTRESC,LBSTRESN,LBSTRESU,LBSPEC,LBDTC\n"


def folder(tmp_path: Path, **files: str | None) -> Path:
    d = tmp_path / "sdtm"
    d.mkdir()
    files.setdefault("dm", DM.format(fl="", dth=""))
    files.setdefault("ex", EX)
    for k, v in files.items():
        if v is not None:
            (d / f"{k}.csv").write_text(v, encoding="utf-8")
    return d


def msgs(study) -> list[str]:
    return [w.message for w in study.warnings]


def deaths(study) -> list[float]:
    return study.events.filter(pl.col("event") == "death")["day"].to_list()
