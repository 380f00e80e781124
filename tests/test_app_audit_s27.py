"""Fixes of the dashboard audit (session 27): Host/Origin checks (cross-site websocket hijacking, DNS
rebinding), the ?token= redirect, tokens as UTF-8 bytes, grade ranges (missing is not negative), the
best response's reason, kinetics reasons, dose-level order and rounding, CSV provenance, analysis
options of ``cartlab serve``.

Every expected value is derived by hand in the comment next to it, from the hand-built study below
(``hand_study``) or from the rule being tested -- never copied from cartlab's output.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import polars as pl
import pytest

from cartlab.app import cohort as C
from cartlab.app.data import Catalog, dose_level_label, round_sig
from cartlab.app.run import ServerThread, free_port
from cartlab.app.security import (
    HostPolicy,
    check_token,
    is_traversal,
    parse_origin,
    same_origin_location,
    split_host,
)
from cartlab.app.server import create_app, grade_text, response_text
from cartlab.errors import InputError
from http_raw import raw_request

TOKEN = "s27-token-0123456789"
TIMEOUT = 60_000


def hand_study():
    """Five subjects, every value chosen by hand:

    * A (AML): TEMP 37.0 on day 1 -> no fever (< 38 °C, ASTCT) -> CRS 0, nothing missing: "0".
    * B (AML): TEMP 37.2 on day 1 (grade 0); day 2 only SBP 85 mmHg, no temperature -> graded 0 as
      measured, but a fever would make it hypotension without vasopressor = grade 2: "0–2".
    * C (LBCL): TEMP 39.0 on day 1 -> fever, no SBP recorded -> grade 1, up to 2 (SYSBP missing): "1–2";
      cartlab has no lymphoma response
      criteria, so its best response has none, with that reason.
    * D (AML): no CAR-T dose at all (only the TEMP 37.0 on day 1): "no CAR-T dose recorded".
    * K (T-ALL): CARCOPY 1000, 5000, 800 on days 7, 14, 21 (LLOQ 50): Cmax 5000 on day 14; one
      positive sample after tmax, fewer than the 3 a terminal fit needs, so lambda.z (and every
      parameter that needs it, e.g. AUCIFO) has no value.
    Doses: 1e6 cells/kg for A, B, C, K (1×10⁶/kg); none for D. A, B, K have no marrow assessment, so
    their best response is NE ("not evaluable").
    """
    from cartlab.model import Study, conform

    ids = ["A", "B", "C", "D", "K"]
    subjects = conform(pl.DataFrame({"subject_id": ids, "disease": ["AML", "AML", "LBCL", "AML", "T-ALL"],
                                     "target": ["CD7", "CD7", "CD19", "CD7", "CD7"], "weight_kg": [50.0] * 5}),
                       "subjects")
    doses = conform(pl.DataFrame({"subject_id": ["A", "B", "C", "K"], "day": [0.0] * 4, "agent": ["CAR-T"] * 4,
                                  "dose": [1e6] * 4, "unit": ["cells/kg"] * 4}), "doses")
    rows = [("A", 1.0, "TEMP", 37.0, "C", None), ("B", 1.0, "TEMP", 37.2, "C", None),
            ("B", 2.0, "SYSBP", 85.0, "mmHg", None), ("C", 1.0, "TEMP", 39.0, "C", None),
            ("D", 1.0, "TEMP", 37.0, "C", None),
            ("K", 7.0, "CARCOPY", 1000.0, "copies/ug gDNA", 50.0), ("K", 14.0, "CARCOPY", 5000.0, "copies/ug gDNA", 50.0),
            ("K", 21.0, "CARCOPY", 800.0, "copies/ug gDNA", 50.0)]
    obs = conform(pl.DataFrame(rows, schema=["subject_id", "day", "param", "value", "unit", "lloq"], orient="row"),
                  "observations")
    return Study(study_id="hand", subjects=subjects, doses=doses, observations=obs)


@pytest.fixture(scope="module")
def hand_view():
    return Catalog.from_study(hand_study(), "folder hand").view("hand")


def request(host, port, path, headers=None):
    """(status, headers, body) of a raw request; ``Host`` is sent as given in ``headers`` (else the address)."""
    return raw_request(host, port, path, headers)


def ws_attempt(port, headers, path="/websocket/"):
    websockets = pytest.importorskip("websockets")
    from websockets.asyncio.client import connect

    async def run():
        try:
            async with connect(f"ws://127.0.0.1:{port}{path}", additional_headers=headers, open_timeout=10):
                return "open"
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    # in a thread of its own: a browser test of the same session may have left an event loop running here
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="module")
def servers():
    """The hand study without a token (port known to the guard) and with a token and a proxy origin."""
    catalog = Catalog.from_study(hand_study(), "folder hand")
    port = free_port()
    with ServerThread(create_app(catalog, port=port), port=port) as open_srv, \
            ServerThread(create_app(catalog, token=TOKEN, allowed_origins=["https://dash.example.org"])) as tok_srv:
        yield open_srv, tok_srv


# -- 1. Host and Origin ------------------------------------------------------------------------------


def test_same_origin_works(servers):
    srv, _ = servers
    for host in (f"127.0.0.1:{srv.port}", f"localhost:{srv.port}", f"[::1]:{srv.port}"):
        status, _, body = request(srv.host, srv.port, "/", {"Host": host})
        assert status == 200 and b"cartlab" in body, host
    # a browser's same-origin websocket: Origin = http://<the Host it connects to>
    assert ws_attempt(srv.port, {"Origin": f"http://127.0.0.1:{srv.port}"}) == "open"
    assert ws_attempt(srv.port, {}) == "open"  # no Origin: not a browser page, nothing to hijack


@pytest.mark.parametrize("host", ["evil.example", "evil.example:{port}", "127.0.0.1.evil.example:{port}",
                                  "127.0.0.1:1", ""])
def test_foreign_host_is_refused(servers, host):
    """DNS rebinding: the attacker's name resolves to 127.0.0.1, the Host header still names it. A
    port other than the bound one (127.0.0.1:1) is not this dashboard either."""
    srv, _ = servers
    status, headers, body = request(srv.host, srv.port, "/", {"Host": host.format(port=srv.port)})
    assert status == 403
    assert headers["content-type"].startswith("text/plain") and b"Host" in body
    assert b"cartlab" not in body.lower().replace(b"cartlab_", b"")


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://127.0.0.2:{port}",
                                    "http://localhost:1", "https://127.0.0.1:{port}.evil.example"])
def test_foreign_origin_is_refused(servers, origin):
    """Cross-site websocket hijacking: a page on another origin (another host, another port, "null"
    from a sandboxed frame) opens the websocket of the dashboard on loopback."""
    srv, tok = servers
    o = origin.format(port=srv.port)
    assert ws_attempt(srv.port, {"Origin": o}) == 403
    status, _, body = request(srv.host, srv.port, "/", {"Origin": o})
    assert status == 403 and b"Origin" in body
    # a token does not make a foreign origin acceptable
    assert ws_attempt(tok.port, {"Origin": o, "Authorization": f"Bearer {TOKEN}"}) == 403


def test_allowed_origin_behind_a_proxy(servers):
    """--allowed-origin https://dash.example.org: a proxy that keeps the Host, or one that rewrites it
    to the upstream address, both pass; another origin still does not."""
    _, tok = servers
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert request(tok.host, tok.port, "/", {**auth, "Host": "dash.example.org"})[0] == 200
    assert ws_attempt(tok.port, {**auth, "Origin": "https://dash.example.org"}) == "open"
    assert ws_attempt(tok.port, {**auth, "Origin": "https://dash.example.org:8443"}) == 403
    assert request(tok.host, tok.port, "/", {**auth, "Host": "other.example.org"})[0] == 403


def test_host_policy_rules():
    p = HostPolicy("127.0.0.1", 8050)
    assert p.host_ok("127.0.0.1:8050") and p.host_ok("LOCALHOST:8050") and p.host_ok("[::1]:8050")
    assert not p.host_ok("127.0.0.1:8051") and not p.host_ok("evil.example:8050") and not p.host_ok(None)
    assert p.origin_ok("http://localhost:8050", "localhost:8050")
    assert not p.origin_ok("http://localhost:8050", "127.0.0.1:8050")  # another origin than the page's
    w = HostPolicy("0.0.0.0", 8050)  # any interface: an IP literal cannot be rebound, a name can
    assert w.host_ok("192.168.1.5:8050") and not w.host_ok("evil.example:8050")
    assert split_host("[::1]:80") == ("::1", 80) and split_host("a/b") is None
    assert parse_origin("HTTPS://Dash.Example.org:443/") == "https://dash.example.org"
    for bad in ("dash.example.org", "https://x/path", "ftp://x", "https://user@x"):
        with pytest.raises(InputError):
            parse_origin(bad)


# -- 7. the ?token= redirect ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/%09/evil.example", "/%0a", "/%0d%0aSet-Cookie:%20x=1", "/%5c%5cevil.example",
                                  "/%7f"])
def test_token_redirect_is_same_origin(servers, path):
    """A control character (tab, LF, CR, DEL) or a backslash in the path: 400, never a redirect
    (a browser drops a tab: "/\\t/evil.example" would become "//evil.example", another host)."""
    _, tok = servers
    status, headers, _ = request(tok.host, tok.port, f"{path}?token={TOKEN}")
    assert status == 400 and "location" not in headers
    assert is_traversal(path)


def test_token_redirect_keeps_the_path(servers):
    _, tok = servers
    status, headers, _ = request(tok.host, tok.port, f"/lib/a%20b.js?x=1&token={TOKEN}")
    assert status == 303 and headers["location"] == "/lib/a%20b.js?x=1"  # as sent, without the token
    assert same_origin_location("", "//evil.example", b"") is None
    assert same_origin_location("", "/ok", b"a=1") == b"/ok?a=1"


# -- 8. tokens --------------------------------------------------------------------------------------------


def test_non_ascii_token_both_ways():
    """The token "pässwörd-0123456789" is the UTF-8 bytes p, c3 a4, s, s, w, c3 b6, r, d ... in a header
    and %C3%A4 / %C3%B6 in a query: the same bytes, so both must pass."""
    token = "pässwörd-0123456789"
    catalog = Catalog.from_study(hand_study(), "folder hand")
    with ServerThread(create_app(catalog, token=token)) as srv:
        status, _, _ = request(srv.host, srv.port, "/", {"Authorization": "Bearer pässwörd-0123456789".encode()})
        assert status == 200
        status, headers, _ = request(srv.host, srv.port, "/?token=p%C3%A4ssw%C3%B6rd-0123456789")
        assert status == 303 and headers["location"] == "/"
        assert request(srv.host, srv.port, "/", {"Authorization": "Bearer passwoord-0123456789"})[0] == 403


def test_check_token():
    assert check_token("x" * 15, "0.0.0.0")  # 15 < 16 characters off loopback: a warning
    assert check_token("x" * 16, "0.0.0.0") == []
    assert check_token("x", "127.0.0.1") == []  # loopback: no warning
    for bad in (" tok-0123456789abcdef", "tok-0123456789abcdef ", "tok\t0123456789abcdef"):
        with pytest.raises(InputError):  # a header value cannot carry surrounding spaces or a tab
            check_token(bad, "0.0.0.0")


# -- 2, 5. grade ranges, best response reasons --------------------------------------------------------------


def test_grade_ranges_and_response_labels(hand_view):
    ch = C.filter_choices(hand_view.cohort)
    # A 0, B 0–2, C 1–2 (fever, no SBP: hypotension unknown); D: 37.0 -> 0; K: no CRS input -> not evaluable
    assert ch["f_crs"] == ["0", "0–2", "1–2", "not evaluable"]
    assert C.filter_cohort(hand_view.cohort, {"f_crs": ["0"]})["subject_id"].to_list() == ["A", "D"]
    assert C.filter_cohort(hand_view.cohort, {"f_crs": ["0–2"]})["subject_id"].to_list() == ["B"]
    # NE (A, B, D, K: no marrow assessment) and none are one choice; LBCL (C) says why
    assert ch["f_response"] == ["no response criteria yet (LBCL)", "not evaluable"]
    row = {r["subject_id"]: r for r in hand_view.cohort.iter_rows(named=True)}
    assert grade_text(row["B"], "crs_grade_astct") == "0–2"
    assert grade_text(row["A"], "crs_grade_astct") == "0"
    text, reason = response_text(row["C"])
    assert text.startswith("not evaluable (no response criteria for disease 'LBCL'") and "LBCL" in reason


def test_grade_label_rules():
    """Pure rules, on a hand-made cohort: max > grade -> range; max == grade -> the grade; none -> not evaluable."""
    cohort = pl.DataFrame({"subject_id": ["a", "b", "c", "d"], "icans_grade_astct": [0, 0, None, 2],
                           "icans_grade_astct_max": [1, 0, None, 2]})
    assert C.filter_choices(cohort)["f_icans"] == ["0", "0–1", "2", "not evaluable"]
    assert C.filter_cohort(cohort, {"f_icans": ["0"]})["subject_id"].to_list() == ["b"]


def test_grades_table_has_missing_inputs(hand_view):
    t = C.grades_table(hand_view.patient("B").crs_daily, hand_view.patient("B").icans_daily)
    day2 = t.filter((pl.col("day") == 2) & pl.col("scale").str.starts_with("CRS")).row(0, named=True)
    assert day2["grade"] == 0 and day2["grade_max"] == 2 and list(day2["missing_inputs"]) == ["TEMP"]


# -- 6. kinetics -------------------------------------------------------------------------------------------


def test_kinetics_empty_values_say_why(hand_view):
    p = hand_view.patient("K")
    t = C.kinetics_table(p.car_kinetics, p.adpp)
    rows = {r["PPTESTCD"]: r for r in t.iter_rows(named=True)}
    assert rows["CMAX"]["AVAL"] == 5000.0 and rows["CMAX"]["why_empty"] is None  # the largest sample
    assert rows["TMAX"]["AVAL"] == 14.0
    for code in ("AUCIFO", "LAMZ"):  # one sample after tmax: no terminal fit
        assert rows[code]["AVAL"] is None and "lambda.z" in rows[code]["why_empty"]
    assert all(r["why_empty"] for r in rows.values() if r["AVAL"] is None)


# -- 10. dose levels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, label", [
    (1.25e6, "1.2×10⁶/kg"),  # 1.25 -> half to even -> 1.2
    (1.35e6, "1.4×10⁶/kg"),  # 1.35 -> half to even -> 1.4 (same rule, though 1.35 is below it in binary)
    (1.05e8, "1×10⁸/kg"),  # 1.05 -> 1.0
    (1.15e6, "1.2×10⁶/kg"),  # 1.15 -> 1.2
    (2.5e5, "2.5×10⁵/kg"),
])
def test_dose_rounding_half_even(value, label):
    assert dose_level_label(value) == label


def test_round_sig():
    assert round_sig(0.125, 2) == 0.12 and round_sig(0.135, 2) == 0.14 and round_sig(-2.5, 1) == -2.0


def test_dose_filter_sorted_by_number():
    cohort = pl.DataFrame({"subject_id": list("abcde"),
                           "dose_level": ["1×10⁷/kg", "2×10⁶/kg", None, "1×10⁶/kg", "2.5×10⁵/kg"]})
    # 2.5e5 < 1e6 < 2e6 < 1e7; unknown last
    assert C.filter_choices(cohort)["f_dose"] == ["2.5×10⁵/kg", "1×10⁶/kg", "2×10⁶/kg", "1×10⁷/kg", "unknown"]


# -- 3. download names --------------------------------------------------------------------------------------


def test_filter_tag():
    assert C.filter_tag({"f_disease": ()}) == ""
    assert C.filter_tag({"f_disease": ("AML",), "f_crs": ("0–2",)}) == "_filtered_disease-AML_crs-0-2"
    # session 31: several values joined with _or_ ("1e6.2e6" read like one number)
    assert C.filter_tag({"f_dose": ("1×10⁶/kg", "2×10⁶/kg")}) == "_filtered_dose-1e6_or_2e6"
    long = C.filter_tag({"f_target": tuple(f"target{i}" for i in range(30))})
    assert len(long) < 80 and long != C.filter_tag({"f_target": tuple(f"target{i}" for i in range(31))})


# -- 4. options ---------------------------------------------------------------------------------------------


def test_options_change_the_grades_and_are_shown():
    """crs.fever_threshold_c = 39.5: C's 39.0 °C is then no fever, so C's CRS grade is 0, not 1."""
    from cartlab.analyze import AnalysisOptions
    from cartlab.app.data import describe_options

    opts = AnalysisOptions.from_settings({"crs": {"fever_threshold_c": 39.5}})
    v = Catalog.from_study(hand_study(), "folder hand", options=opts).view("hand")
    row = v.cohort.filter(pl.col("subject_id") == "C").row(0, named=True)
    assert row["crs_grade_astct"] == 0
    # session 40 (review 40 consistency B1): the older scales follow crs.fever_threshold_c, so it is in force
    # for them too and shown
    assert describe_options(v.overrides) == ("options not default: crs.fever_threshold_c = 39.5 (default 38.0); "
                                             "crs_legacy.fever_threshold_c = 39.5 (default 38.0)")
    assert describe_options({}) == "options: all defaults"


def test_serve_takes_the_analyze_option_flags(tmp_path):
    r = subprocess.run([sys.executable, "-m", "cartlab", "serve", "--help"], capture_output=True, text=True,
                       timeout=120, check=False, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    for flag in ("--set", "--options", "--protocol", "--allowed-origin", "CARTLAB_TOKEN"):
        assert flag in r.stdout, flag
    r = subprocess.run([sys.executable, "-m", "cartlab", "serve", "x", "--set", "nodot=1"], capture_output=True,
                       text=True, timeout=120, check=False, cwd=tmp_path)
    assert r.returncode == 2 and "ENGINE.OPTION=VALUE" in r.stderr
    r = subprocess.run([sys.executable, "-m", "cartlab", "serve", "x", "--allowed-origin", "evil.example/x"],
                       capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path)
    assert r.returncode == 2 and "scheme://host" in r.stderr


# -- 11. warnings once -------------------------------------------------------------------------------------


def test_same_warning_logged_once():
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        for _ in range(3):  # three filter changes
            with C.warnings_once():
                warnings.warn("withheld", UserWarning, stacklevel=1)
    assert len(rec) == 1


# -- in the browser --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hand_server():
    catalog = Catalog.from_study(hand_study(), "folder hand")
    with ServerThread(create_app(catalog)) as srv:
        yield srv


@pytest.mark.browser
def test_browser_ranges_reasons_and_provenance(page, hand_server):
    pytest.importorskip("playwright")
    from playwright.sync_api import expect
    from shiny.playwright import controller

    page.goto(hand_server.url)
    expect(page.locator("#study_status")).to_contain_text("options: all defaults", timeout=TIMEOUT)
    page.get_by_role("tab", name="Patient").click()
    headline = page.locator("#patient_headline_text")
    controller.InputSelectize(page, "subject").set("B")
    expect(headline).to_contain_text("CRS grade 0–2", timeout=TIMEOUT)  # hand_study: B is 0–2
    controller.InputSelectize(page, "subject").set("C")
    expect(headline).to_contain_text("no response criteria for disease 'LBCL'", timeout=TIMEOUT)
    controller.InputSelectize(page, "subject").set("D")
    expect(headline).to_contain_text("no CAR-T dose recorded", timeout=TIMEOUT)
    expect(page.locator("#course_plot")).to_contain_text("study day", timeout=TIMEOUT)
    expect(page.locator("#course_plot")).not_to_contain_text("after the first CAR-T infusion")
    controller.InputSelectize(page, "subject").set("K")
    expect(page.locator("#kinetics_table")).to_contain_text("lambda.z", timeout=TIMEOUT)

    page.get_by_role("tab", name="Cohort").click()
    count = page.locator("#cohort_count")
    expect(count).to_contain_text("5 of 5 subjects", timeout=TIMEOUT)
    controller.InputSelectize(page, "f_crs").set(["0"])
    expect(count).to_contain_text("2 of 5 subjects", timeout=TIMEOUT)  # A and D, not B (0–2)
    with page.expect_download(timeout=TIMEOUT) as info:
        page.locator("#dl_cohort").click()
    csv_dl = info.value
    assert csv_dl.suggested_filename == "hand_subjects_filtered_crs-0.csv"
    csv_bytes = Path(csv_dl.path()).read_bytes()
    assert sorted(pl.read_csv(csv_bytes)["subject_id"].to_list()) == ["A", "D"]
    with page.expect_download(timeout=TIMEOUT) as info:
        page.locator("#dl_cohort_prov").click()
    prov_dl = info.value
    assert prov_dl.suggested_filename == "hand_subjects_filtered_crs-0.provenance.json"
    prov = json.loads(Path(prov_dl.path()).read_text(encoding="utf-8"))
    from cartlab import __version__

    assert prov["filters"] == {"crs": ["0"]} and prov["cartlab_version"] == __version__
    assert prov["options_all_defaults"] is True and prov["options_not_default"] == {}
    assert prov["file"] == "hand_subjects_filtered_crs-0.csv" and prov["rows"] == 2
    assert prov["sha256"] == hashlib.sha256(csv_bytes).hexdigest()  # pairs the two files
