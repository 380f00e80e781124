"""End-to-end through the `cartlab` command: protocols, dose (table, csv, dosing sheets),
eligibility, deviations, and analyze/report with a protocol. The first command runs the installed
command in a subprocess; the others the same command line in this process (test_cli.run_here: the same
exit code, stdout and stderr, without a subprocess's 3-5 s of imports)."""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys

import pytest

from cartlab.datasets import seed_case_path
from test_cli import run_here

CARTLAB = [sys.executable, "-m", "cartlab"]
SEED = str(seed_case_path())


def run_process(*args, cwd=None):
    e = {**os.environ, "COLUMNS": "220"}
    return subprocess.run([*CARTLAB, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=e)


def run(*args, cwd=None):
    return run_here(*args, cwd=cwd, env={"COLUMNS": "220"})


def test_protocols_lists_and_checks():
    out = run_process("protocols")  # the installed command
    assert out.returncode == 0
    for pid in ("nct04762485", "tisagenlecleucel_ball", "axicabtagene_lbcl"):
        assert pid in out.stdout
    one = run("protocols", "NCT04762485")
    assert one.returncode == 0 and "valid" in one.stdout and "decitabine" in one.stdout
    assert "ORR = CR + CRi + MLFS + PR" in one.stdout
    js = run("protocols", "--json-schema")
    assert js.returncode == 0
    import json

    schema = json.loads(js.stdout)
    assert {"schema", "id", "car_t", "lymphodepletion", "eligibility"} <= set(schema["properties"])


def test_dose_seed_patient_csv_has_the_papers_numbers():
    out = run("dose", "--protocol", "nct04762485", "--weight", 52, "--height", 160, "--age", 17, "--sex", "F",
              "--creatinine", 54, "umol/L", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(float(r["day"]), r["agent"]) for r in rows][:2] == [(-6.0, "decitabine"), (-5.0, "cyclophosphamide")]
    flu = [r for r in rows if r["agent"] == "fludarabine"]
    assert [float(r["day"]) for r in flu] == [-5, -4, -3]
    assert all(float(r["dose"]) == pytest.approx(45.6) for r in flu)
    assert flu[0]["basis"] == "30 mg/m2 x BSA 1.52 m2 (Mosteller)"
    car = [r for r in rows if r["agent"] == "CAR-T"]
    assert [(float(r["day"]), float(r["dose"])) for r in car] == [(0.0, pytest.approx(5.2e7)), (2.0, pytest.approx(2.08e8))]


def test_dose_table_with_creatinine_and_renal_note():
    out = run("dose", "-p", "nct04762485", "--weight", 70, "--height", 170, "--age", 70, "--sex", "M",
              "--creatinine", "141", "umol/L")
    assert out.returncode == 0, out.stderr
    assert "BSA 1.82 m2 (Mosteller)" in out.stdout and "Cockcroft-Gault" in out.stdout
    assert "20% dose reduction" in out.stdout and "x 0.8 (renal)" in out.stdout


@pytest.mark.parametrize("args, msg", [
    (["--weight", 500, "--height", 160], "weight 500 kg is implausible"),
    (["--weight", 50, "--height", 20], "height 20 cm is implausible"),
    (["--weight", 52, "--height", 160, "--car-dose", "2e7"], "above the protocol's maximum"),
    (["--weight", 52, "--height", 160, "--creatinine", "54", "parsecs"], "creatinine unit 'parsecs'"),
    (["--weight", 52, "--height", 160, "--viability", "95"], "fraction between 0 and 1"),
])
def test_dose_refuses_implausible_inputs(args, msg):
    out = run("dose", "-p", "nct04762485", *args)
    assert out.returncode == 2
    assert msg in " ".join(out.stderr.split())
    assert out.stdout == ""


def test_dose_with_invalid_protocol_file_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    from cartlab.protocol import load_protocol

    text = open(load_protocol("nct04762485").path, encoding="utf-8").read()
    bad.write_text(text.replace("    unit: mg/m2\n", "    unit: mg per m2\n", 1), encoding="utf-8")
    out = run("dose", "-p", bad, "--weight", 52, "--height", 160)
    assert out.returncode == 2
    err = " ".join(out.stderr.split())
    assert str(bad) in err and "lymphodepletion[1].unit" in err and "line " in err


def test_dose_unknown_protocol_id():
    out = run("dose", "-p", "nct99", "--weight", 52, "--height", 160)
    assert out.returncode == 2 and "nct04762485" in out.stderr


def test_dosing_sheets_html_and_pdf(tmp_path):
    html = tmp_path / "sheet.html"
    pdf = tmp_path / "sheet.pdf"
    for path in (html, pdf):
        out = run("dose", "-p", "nct04762485", "--weight", 52, "--height", 160, "--age", 17, "--sex", "F",
                  "--creatinine", 54, "umol/L", "--product-conc", "2e7", "--viability", 0.9, "--sheet", path,
                  "--subject", "CD7-AML-001")
        assert out.returncode == 0, out.stderr
    text = html.read_text(encoding="utf-8")
    for needle in ("sqrt(160 x 52 / 3600) = 1.5202 m2", "Mosteller RD", "Cockcroft", "CKD-EPI 2021",
                   "54 umol/L", "45.6", "5.20 x10^7", "fludarabine_label.normal", "Cao et al. 2022", "Checked by",
                   "CD7-AML-001", "derived in adults"):
        assert needle in text, needle
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and len(data) > 2000
    bad = run("dose", "-p", "nct04762485", "--weight", 52, "--height", 160, "--sheet", tmp_path / "sheet.docx")
    assert bad.returncode == 2 and ".html or .pdf" in bad.stderr
    assert not (tmp_path / "sheet.docx").exists()


def test_eligibility_of_the_seed_patient():
    out = run("eligibility", "CD7-AML-001", "--protocol", "nct04762485", "--study-dir", SEED)
    assert out.returncode == 0, out.stderr
    assert "undetermined" in out.stdout and "cd7_on_blasts" in out.stdout and "95.6" in out.stdout
    c = run("eligibility", "CD7-AML-001", "--protocol", "nct04762485", "--study-dir", SEED, "--format", "csv")
    rows = {r["criterion_id"]: r for r in csv.DictReader(io.StringIO(c.stdout))}
    assert rows["age"]["status"] == "pass" and rows["cd7_on_blasts"]["status"] == "pass"
    assert rows["ecog"]["status"] == "unknown" and "no ECOG result" in rows["ecog"]["reason"]
    assert rows["bilirubin"]["status"] == "pass" and rows["bilirubin"]["source"] == "reconstructed"
    assert rows["cd7_on_blasts"]["evidence"].startswith("observations.csv:")
    unknown = run("eligibility", "NOBODY", "--protocol", "nct04762485", "--study-dir", SEED)
    assert unknown.returncode == 2 and "NOBODY" in unknown.stderr


def test_eligibility_from_the_store(tmp_path):
    store = tmp_path / "s.duckdb"
    assert run("import", SEED, "--store", store).returncode == 0
    out = run("eligibility", "CD7-AML-001", "--protocol", "nct04762485", "--store", store)
    assert out.returncode == 0 and "cd7_on_blasts" in out.stdout


def test_deviations_of_the_seed_and_of_a_label_protocol():
    out = run("deviations", "--study-dir", SEED, "--protocol", "nct04762485", "--format", "csv")
    assert out.returncode == 0, out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert [(r["category"], r["item"], r["days"]) for r in rows] == [
        ("missed_monitoring", "BMBLAST", "28.0"), ("missed_monitoring", "MRDFCM", "28.0")]
    other = run("deviations", "CD7-AML-001", "--study-dir", SEED, "--protocol", "axicabtagene_lbcl")
    assert other.returncode == 0
    assert "dose_out_of_tolerance" in other.stdout and "unplanned_agent" in other.stdout
    assert run("deviations", "--protocol", "nct04762485").returncode == 2


def test_analyze_and_report_with_a_protocol(tmp_path):
    out = run("analyze", SEED, "--out", tmp_path / "a", "--protocol", "nct04762485")
    assert out.returncode == 0, out.stderr
    for name in ("dose_plan", "eligibility", "eligibility_verdict", "protocol_deviations", "protocol_orr"):
        assert (tmp_path / "a" / f"{name}.csv").is_file(), name
    plan = list(csv.DictReader(open(tmp_path / "a" / "dose_plan.csv", encoding="utf-8")))
    assert len(plan) == 12 and plan[0]["subject_id"] == "CD7-AML-001"
    rep = run("report", SEED, "--out", tmp_path / "r", "--protocol", "nct04762485")
    assert rep.returncode == 0, rep.stderr
    page = next((tmp_path / "r").glob("subject_*.html")).read_text(encoding="utf-8")
    assert 'id="protocol"' in page and "Planned administrations" in page and "missed_monitoring" in page
    assert "30 mg/m2 x BSA 1.52 m2 (Mosteller)" in page


def test_dose_for_a_subject_read_from_the_study_data():
    out = run("dose", "-p", "nct04762485", "--subject", "CD7-AML-001", "--study-dir", SEED, "--format", "csv")
    assert out.returncode == 0, out.stderr
    assert "52 kg, 160 cm" in out.stderr and "creatinine 54" in out.stderr
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    flu = [r for r in rows if r["agent"] == "fludarabine"]
    assert flu[0]["rule"].split("; ")[-1] == "fludarabine_label.normal" and float(flu[0]["dose"]) == pytest.approx(45.6)
    # a flag overrides the data
    heavier = run("dose", "-p", "nct04762485", "--subject", "CD7-AML-001", "--study-dir", SEED, "--weight", 60,
                  "--format", "csv")
    car = [r for r in csv.DictReader(io.StringIO(heavier.stdout)) if r["agent"] == "CAR-T"]
    assert float(car[0]["dose"]) == pytest.approx(6e7)
    assert run("dose", "-p", "nct04762485").returncode == 2
