"""Traceability audit s27 (notes/audit_trace/REPORT.md), findings 1-3: analysis.json records the
options as applied; the protocol outputs carry a rule status and their source rows; every rule id
written in a table is a row of a criteria table (or of the protocol file) with a status.

Inputs: the seed case with protocol nct04762485, and the audit's 3-subject study (study1: A1 adult
AML, A2 8-year-old B-ALL, A3 AML). The audit's folder was lost; session 34 rebuilt it as the committed
synthetic fixture tests/fixtures/trace_audit_s27/study1 (designed by hand from the facts below, see its
README.md), copied into tmp for each run. Every expectation is derived by hand in its docstring.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cartlab.criteria import rule_status, rules_in
from cartlab.datasets import seed_case_path

#: session 34: the committed fixture (was /work/notes/audit_trace/study1, lost; the tests skipped)
AUDIT = Path(__file__).parent / "fixtures" / "trace_audit_s27" / "study1"


def run(*args):
    return subprocess.run([sys.executable, "-m", "cartlab", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def study1(tmp_path_factory) -> Path:
    assert AUDIT.is_dir(), f"missing test fixture {AUDIT}"  # session 34: an error, no longer a skip
    return Path(shutil.copytree(AUDIT, tmp_path_factory.mktemp("s27") / "study1"))


def _analyze(out: Path, folder: Path, *extra) -> Path:
    """``cartlab analyze`` in this process (session 42, suite speed: CliRunner, not a subprocess; what
    is tested here are the files it writes; test_dose_command_csv_has_the_rule_status keeps a subprocess)."""
    from typer.testing import CliRunner

    from cartlab.cli import app

    r = CliRunner().invoke(app, ["analyze", *map(str, (folder, "--out", out, *extra))])
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def s1_prot(study1, tmp_path_factory) -> Path:
    return _analyze(tmp_path_factory.mktemp("s27") / "s1_prot", study1, "--protocol", "nct04762485")


@pytest.fixture(scope="module")
def s1_mrd(study1, tmp_path_factory) -> Path:
    return _analyze(tmp_path_factory.mktemp("s27") / "s1_mrd", study1, "--set", "response.mrd_threshold=1e-4")


@pytest.fixture(scope="module")
def seed_prot(tmp_path_factory) -> Path:
    return _analyze(tmp_path_factory.mktemp("s27") / "seed_prot", seed_case_path(), "--protocol", "nct04762485")


def _rows(folder: Path, table: str) -> list[dict[str, str]]:
    with open(folder / f"{table}.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _options(folder: Path) -> dict:
    return json.loads((folder / "analysis.json").read_text(encoding="utf-8"))["options"]


# ---------------------------------------------------------------------------------------------
# finding 1: the options as applied


def test_response_options_are_recorded_as_applied_per_disease(s1_prot):
    """study1 has AML (A1, A3) and B-ALL (A2). eln2022_aml.yaml: mrd_threshold 0.001, all_car_t.yaml:
    0.0001 -> a mapping by disease; count_window_days is 3 and missing_pb_blasts not_evaluable in
    both tables -> one value; the criteria are chosen by disease. use_crh exists only in the AML
    table. The best response gets the analysis's response options: the same record. The kinetics
    parameter is chosen per subject: the rule is recorded (not null; the same in a batched run), and
    A1, the only subject with CAR samples (8 CARCOPY rows), used CARCOPY, as car_kinetics.csv names.
    The endpoints: all five ADTTE parameters."""
    o = _options(s1_prot)
    r = o["response"]
    assert r["mrd_threshold"] == {"AML": 0.001, "B-ALL": 0.0001}
    assert r["count_window_days"] == 3 and r["missing_pb_blasts"] == "not_evaluable"
    assert r["criteria"] == {"AML": "eln2022_aml", "B-ALL": "all_car_t"}
    assert r["use_crh"] == {"AML": True}
    assert "disease" in r["by_disease"]
    assert None not in (r["count_window_days"], r["mrd_threshold"], r["missing_pb_blasts"], r["criteria"])
    assert o["best_response"]["response"] == r
    assert o["kinetics"]["param"].startswith("per subject: CARCOPY when the subject has a CARCOPY sample, else CARCELL")
    assert {(r["subject_id"], r["param"]) for r in _rows(s1_prot, "car_kinetics")} == {("A1", "CARCOPY")}
    assert o["endpoints"]["params"] == ["OS", "EFS", "RFS", "LFS", "CIR"]


def test_a_set_response_option_is_the_same_in_both_places_and_is_applied(s1_prot, s1_mrd):
    """--set response.mrd_threshold=1e-4: both tables then use 1e-4 -> one value, in options.response
    and options.best_response.response. A1's MRDFCM 5e-4 is below the AML default 1e-3 (negative)
    but not below 1e-4 (positive); A2's 2e-4 is not below 1e-4 either way."""
    o = _options(s1_mrd)
    assert o["response"]["mrd_threshold"] == 0.0001
    assert o["best_response"]["response"]["mrd_threshold"] == 0.0001
    assert o["best_response"]["response"] == o["response"]
    before = {r["subject_id"]: r["mrd_negative"] for r in _rows(s1_prot, "best_response")}
    after = {r["subject_id"]: r["mrd_negative"] for r in _rows(s1_mrd, "best_response")}
    assert (before["A1"], after["A1"]) == ("true", "false")
    assert (before["A2"], after["A2"]) == ("false", "false")


def test_a_single_disease_study_records_single_values(seed_prot):
    """The seed case is one AML subject: only eln2022_aml applies -> 0.001 and the table's name."""
    r = _options(seed_prot)["response"]
    assert r["mrd_threshold"] == 0.001 and r["criteria"] == "eln2022_aml"


def test_options_without_a_study_name_every_disease_with_criteria():
    """AnalysisOptions().to_dict() (the report's and the dashboard's defaults): every disease of the
    two tables (AML; B-ALL, T-ALL, T-LBL, MPAL), the kinetics rule in words."""
    from cartlab.analyze import KINETICS_PARAM_RULE, AnalysisOptions

    o = AnalysisOptions().to_dict()
    assert o["response"]["mrd_threshold"] == {"AML": 0.001, "B-ALL": 0.0001, "T-ALL": 0.0001,
                                              "T-LBL": 0.0001, "MPAL": 0.0001}
    assert o["kinetics"]["param"] == KINETICS_PARAM_RULE
    assert o["best_response"]["response"] == o["response"]


# ---------------------------------------------------------------------------------------------
# finding 2: protocol outputs


def test_protocol_tables_carry_the_status_of_the_protocol_file(s1_prot):
    """nct04762485.yaml: status verified_secondary for its stated items; its monitoring schedules
    are `source: reconstructed` -> convention. renal_adjustment.yaml (fludarabine_label): table
    status verified_secondary."""
    for table in ("dose_plan", "eligibility", "protocol_deviations", "eligibility_verdict"):
        rows = _rows(s1_prot, table)
        assert rows and all(r["rule_status"] for r in rows), table
    for r in _rows(s1_prot, "protocol_deviations"):
        want = "convention" if r["rule"].startswith("nct04762485.monitoring.") else "verified_secondary"
        assert r["rule_status"] == want, r
    assert {r["rule_status"] for r in _rows(s1_prot, "eligibility")} == {"verified_secondary"}


def test_dose_plan_cites_the_rows_behind_each_dose(s1_prot, seed_prot):
    """A1 (subjects.csv:1, 70 kg, 175 cm): cyclophosphamide 300 mg/m2 x BSA sqrt(175 x 70 / 3600) =
    1.8447 -> 1.84 m2 = 552 mg, from subjects.csv:1; decitabine 50 mg flat: no row. A1 has no
    creatinine in days -42..-6: fludarabine not evaluable (rule fludarabine_label), citing the
    subject row only.
    Seed (F, 17 y, 52 kg, 160 cm): creatinine 54 umol/L on day -6 is observations.csv line 26 = data
    row 25; CrCl = (140 - 17) x 52 / (72 x 54/88.4) x 0.85 = 123.6 mL/min > 70 -> fludarabine_label.normal
    (factor 1): 30 mg/m2 x sqrt(160 x 52 / 3600) = 1.52 m2 = 45.6 mg, from subjects.csv:1 and observations.csv:25."""
    a1 = {(r["agent"], r["day"]): r for r in _rows(s1_prot, "dose_plan") if r["subject_id"] == "A1"}
    cy = a1[("cyclophosphamide", "-5.0")]
    assert (float(cy["dose"]), cy["evidence"], cy["rule_status"]) == (552.0, "subjects.csv:1", "verified_secondary")
    assert a1[("decitabine", "-6.0")]["evidence"] == ""
    flu = a1[("fludarabine", "-5.0")]
    # s33: the rule cell also names the protocol's rule and its .renal rule (status convention)
    assert (flu["status"], flu["rule"].split("; ")[-1], flu["evidence"], flu["rule_status"]) == (
        "not_evaluable", "fludarabine_label", "subjects.csv:1", "verified_secondary")
    seed = {(r["agent"], r["day"]): r for r in _rows(seed_prot, "dose_plan")}
    flu = seed[("fludarabine", "-5.0")]
    assert float(flu["dose"]) == pytest.approx(45.6)
    assert (flu["rule"].split("; ")[-1], flu["evidence"], flu["rule_status"]) == (  # s33: last of its rules
        "fludarabine_label.normal", "subjects.csv:1; observations.csv:25", "verified_secondary")


def test_eligibility_verdict_names_its_rules_and_rows(s1_prot):
    """A2 is 8 years old with B-ALL: NCT04762485 needs 12-65 years and AML/T-ALL/T-LBL/MPAL -> not
    eligible on disease and age, both read from subjects.csv:2."""
    a2 = next(r for r in _rows(s1_prot, "eligibility_verdict") if r["subject_id"] == "A2")
    assert a2["verdict"] == "not eligible"
    assert a2["rule"] == "nct04762485.eligibility.disease; nct04762485.eligibility.age"
    assert (a2["evidence"], a2["rule_status"]) == ("subjects.csv:2", "verified_secondary")


def test_dose_command_csv_has_the_rule_status():
    """The audit's case 20: CrCl (140 - 60) x 60 / (72 x 1.6) x 0.85 = 35.4 -> band 30-70, factor 0.8;
    BSA sqrt(160 x 60 / 3600) = 1.63 m2; 30 x 1.63 x 0.8 = 39.12 mg, rule fludarabine_label.moderate,
    status verified_secondary (renal_adjustment.yaml)."""
    r = run("dose", "--protocol", "nct04762485", "--weight", "60", "--height", "160", "--age", "60", "--sex", "F",
            "--creatinine", "1.6", "mg/dL", "--csv")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(r.stdout.splitlines()))
    flu = next(x for x in rows if x["agent"] == "fludarabine")
    # s33: + the protocol's rule and its .renal rule (convention); the worst status stays verified_secondary
    assert (float(flu["dose"]), flu["rule"], flu["rule_status"]) == (
        39.12, "nct04762485.lymphodepletion.fludarabine; nct04762485.lymphodepletion.fludarabine.renal; "
        "fludarabine_label.moderate", "verified_secondary")
    assert all(x["rule_status"] for x in rows) and all(x["evidence"] == "" for x in rows)  # no study rows


PROTOCOL = """\
schema: cartlab-protocol/1
id: s27_demo
title: demo
version: "1"
source: published
citation: "demo citation"
{status}
eligibility:
  - {{id: age, text: Adult, field: age_years, op: ">=", value: 18, citation: "demo 1"}}
lymphodepletion:
  - {{agent: cyclophosphamide, dose: 500, unit: mg/m2, days: [-5, -4, -3], citation: "demo 2"}}
car_t:
  product: demo CAR-T
  bands:
    - {{unit: cells/kg, target: 1.0e6, max: 2.0e6, citation: "demo 3"}}
  infusions:
    - {{day: 0, fraction: 1.0}}
  citation: "demo 3"
  source: reconstructed
"""


@pytest.mark.parametrize("status, eligibility, car_t", [
    ("status: partially_verified", "partially_verified", "convention"),
    ("", "unverified", "convention"),  # no status: not checked; reconstructed: cartlab's choice
])
def test_a_protocol_parsed_from_text_is_a_rule_table_too(status, eligibility, car_t):
    """A protocol not shipped (parsed from text, never loaded by id) still fills rule_status: its
    stated items take the protocol's status (none: unverified), reconstructed ones convention."""
    from cartlab.analyze import Analysis
    from cartlab.datasets import seed_case
    from cartlab.protocol import parse_protocol

    p = parse_protocol(PROTOCOL.format(status=status))
    a = Analysis(seed_case(), protocol=p)
    assert a.table("eligibility")["rule_status"].to_list() == [eligibility]
    plan = a.table("dose_plan")
    assert dict(zip(plan["kind"], plan["rule_status"])) == {"lymphodepletion": eligibility, "car_t": car_t}


# ---------------------------------------------------------------------------------------------
# finding 3: every rule id written resolves to a criteria row with a status

#: rule cells that name no rule id (none since the ICAHT/T-ICAHT not-evaluable windows got their ids)
NO_RULE_ID: set[str] = set()
_ID = re.compile(r"[A-Za-z0-9_\-]+(?:[.:][A-Za-z0-9_\-]+)+|[A-Za-z_]+_[A-Za-z_]+")


def _rule_columns(header: list[str]) -> list[str]:
    return [c for c in header if (c.lower() == "rule" or c.lower().endswith("_rule")) and not c.startswith("lambda")]


def _ids(cell: str) -> list[str]:
    """The rule ids of a cell: '; '/', '-separated parts, each without a 'label: ' prefix."""
    out = []
    for part in re.split(r"[;,]", cell):
        part = part.strip()
        if re.match(r"^[A-Za-z ]+: ", part) and not re.match(r"^[A-Za-z0-9_]+:[A-Za-z0-9_]", part):
            part = part.split(": ", 1)[1].strip()
        if part and _ID.fullmatch(part):
            out.append(part)
    return out


@pytest.mark.parametrize("run_name", ["seed_prot", "s1_prot"])
def test_every_rule_id_written_resolves_with_a_status(run_name, request):
    folder = request.getfixturevalue(run_name)
    unresolved, empty_status, without_id = [], [], set()
    checked = 0
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            cols = _rule_columns(reader.fieldnames or [])
            for row in reader:
                for c in cols:
                    cell = (row[c] or "").strip()
                    if not cell:
                        continue
                    ids = _ids(cell)
                    if not ids:
                        without_id.add(cell)
                        continue
                    for rid in ids:
                        checked += 1
                        infos = rules_in(rid)
                        if not infos or not infos[0].status:
                            unresolved.append((path.name, c, rid))
                    status_col = f"{c}_status"
                    if status_col in row and not row[status_col]:
                        empty_status.append((path.name, c, cell))
    assert checked > 50
    assert not unresolved, sorted(set(unresolved))
    assert not empty_status, sorted(set(empty_status))
    assert without_id <= NO_RULE_ID
    meta = json.loads((folder / "analysis.json").read_text(encoding="utf-8"))
    assert set(meta["rules"]["not_in_a_criteria_table"]) <= NO_RULE_ID


@pytest.mark.parametrize("rid, status", [
    # the audit's list (rule_check.txt) and the explain-only ids
    ("response.NE", "convention"),
    ("response.no_criteria", "convention"),
    ("car_kinetics.nca", "convention"),
    ("car_hematotox.undetermined", "convention"),
    ("baseline.first_lymphodepletion_day", "convention"),
    ("baseline.before_day0", "convention"),
    ("molecular.log10_reduction", "convention"),
    ("molecular.no_baseline", "convention"),
    ("molecular.undetectable_lloq", "convention"),
    ("antigen.loss", "convention"),
    ("response_rate.clopper_pearson", "verified_secondary"),
    ("kinetics.sample", "convention"),
    ("kinetics.blq", "convention"),
    ("kinetics.imputed_zero", "convention"),
    # renal rules are keyed by id in renal_adjustment.yaml: the rule and each band
    ("fludarabine_label", "verified_secondary"),
    ("fludarabine_label.moderate", "verified_secondary"),
    ("fludara_brand_label.mild", "verified_secondary"),
    # shipped protocols resolve without being loaded first
    ("tisagenlecleucel_ball.car_t", "verified_secondary"),
    ("nct04762485.monitoring.marrow", "convention"),
    ("nct04762485.dosing", "convention"),
])
def test_rule_ids_once_without_a_table_have_a_row_and_status(rid, status):
    assert rule_status(rid) == status
    assert rules_in(rid)[0].citation
