"""Security of ``cartlab serve`` (issue 17 §4), against a real uvicorn on a free port (no browser):
loopback by default, a token required on every request when set (401 missing / 403 wrong), the
token cookie's flags, websockets guarded too, no path traversal, sanitised download names, and no
patient identifiers in the server's output."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cartlab.app.data import Catalog
from cartlab.app.run import ServerThread, free_port
from cartlab.app.security import check_bind, is_loopback, is_traversal, safe_filename
from cartlab.app.server import create_app
from cartlab.datasets import seed_case, seed_case_path
from cartlab.errors import InputError
from http_raw import raw_request

TOKEN = "s3cret-token-for-tests"
SEED_SUBJECT = "CD7-AML-001"


@pytest.fixture(scope="module")
def servers():
    """The seed case served twice: without a token and with one (one app each, for the module)."""
    catalog = Catalog.from_study(seed_case(), "folder seed_case")
    with ServerThread(create_app(catalog)) as open_srv, ServerThread(create_app(catalog, token=TOKEN)) as tok_srv:
        yield open_srv, tok_srv


def request(srv, path: str, headers: dict | None = None, method: str = "GET"):
    """(status, headers, body) of a raw request: ``path`` is sent exactly as given (no normalisation)."""
    return raw_request(srv.host, srv.port, path, headers, method)


# -- binding


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "127.0.0.2"])
def test_loopback_hosts(host):
    assert is_loopback(host)
    check_bind(host, None)  # no token needed


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1"])
def test_non_loopback_needs_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(InputError, match="not a loopback address"):
        check_bind(host, None)
    check_bind(host, "t")  # with a token it is allowed


def test_cli_refuses_non_loopback_without_token(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CARTLAB_TOKEN"}
    r = subprocess.run([sys.executable, "-m", "cartlab", "serve", str(seed_case_path()), "--host", "0.0.0.0",
                        "--port", str(free_port())], capture_output=True, text=True, env=env, timeout=120, check=False,
                       cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert "not a loopback address" in r.stderr and "--token" in r.stderr
    assert "Traceback" not in r.stderr


# -- token


def test_no_token_configured_serves(servers):
    open_srv, _ = servers
    status, _, body = request(open_srv, "/")
    assert status == 200 and b"cartlab" in body


def test_token_missing_is_401(servers):
    _, srv = servers
    for path in ("/", "/lib/plotly-7.1.0/plotly.min.js", "/session/x/download/dl_grades?w="):
        status, headers, _ = request(srv, path)
        assert status == 401, path
    assert headers.get("www-authenticate") == "Bearer"


def test_token_wrong_is_403(servers):
    _, srv = servers
    assert request(srv, "/", {"Authorization": "Bearer nope"})[0] == 403
    assert request(srv, "/", {"Authorization": f"Bearer {TOKEN}x"})[0] == 403
    assert request(srv, "/?token=nope")[0] == 403
    assert request(srv, "/", {"Cookie": "cartlab_token=" + "0" * 64})[0] == 403


def test_token_right_is_200(servers):
    _, srv = servers
    status, _, body = request(srv, "/", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"cartlab" in body


def test_query_token_sets_strict_httponly_cookie(servers):
    _, srv = servers
    status, headers, _ = request(srv, f"/?token={TOKEN}&x=1")
    assert status == 303
    assert headers["location"] == "/?x=1"  # the token leaves the URL
    cookie = headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    value = cookie.split(";")[0]
    assert TOKEN not in value  # the cookie holds a MAC of the token, not the token
    status, _, body = request(srv, "/", {"Cookie": value})
    assert status == 200 and b"cartlab" in body


def test_websocket_needs_the_token(servers):
    websockets = pytest.importorskip("websockets")
    from websockets.asyncio.client import connect

    _, srv = servers
    url = f"ws://{srv.host}:{srv.port}/websocket/"

    async def attempt(headers):
        try:
            async with connect(url, additional_headers=headers, open_timeout=10):
                return "open"
        except websockets.exceptions.InvalidStatus as exc:
            return exc.response.status_code

    def run(headers):  # in a thread of its own: a browser test of the same session may hold an event loop here
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, attempt(headers)).result()

    assert run({}) == 403
    assert run({"Authorization": "Bearer nope"}) == 403
    assert run({"Authorization": f"Bearer {TOKEN}"}) == "open"


# -- traversal

TRAVERSALS = [
    "/../../../../etc/passwd",
    "/lib/../../../../etc/passwd",
    "/lib/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/lib/%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/lib/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/lib/%252e%252e%252f%252e%252e%252fetc%252fpasswd",  # double encoded
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/lib/..\\..\\..\\etc\\passwd",
    "/session/abc/download/..%2f..%2f..%2fetc%2fpasswd?w=",
    "/lib/C:/Windows/win.ini",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_is_refused(servers, path):
    for srv, hdr in ((servers[0], {}), (servers[1], {"Authorization": f"Bearer {TOKEN}"})):
        status, _, body = request(srv, path, hdr)
        # refused by the guard before any route (Shiny's static routes would answer 404 anyway: the
        # guard is the layer that does not depend on each route being careful)
        assert status == 400, (path, status)
        assert b"bad request path" in body and b"root:" not in body


@pytest.mark.parametrize("path", TRAVERSALS)
def test_is_traversal(path):
    assert is_traversal(path.split("?")[0])


@pytest.mark.parametrize("path", ["/", "/lib/plotly-7.1.0/plotly.min.js", "/session/abc/download/dl_grades",
                                  "/websocket/", "/lib/a.b/c..d.js"])
def test_ordinary_paths_pass(path):
    assert not is_traversal(path)


@pytest.mark.parametrize("name, expected", [
    ("../../etc/passwd", "passwd"),
    ("..\\..\\win.ini", "win.ini"),
    ("/etc/passwd", "passwd"),
    ("CD7-AML-001_grades.csv", "CD7-AML-001_grades.csv"),
    ("a b;c\n.csv", "a_b_c_.csv"),
    ("..", "table"),
    (".hidden.csv", "hidden.csv"),
    ("x..csv", "x.csv"),
    ("", "table"),
])
def test_safe_filename(name, expected):
    assert safe_filename(name) == expected


# -- logs


def test_no_patient_data_in_server_output(tmp_path):
    """A real ``cartlab serve`` process: requests whose URL carries the subject id leave no trace in
    its output (the access log is off)."""
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "cartlab", "serve", str(seed_case_path()), "--port", str(port)],
                                stdout=fh, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        srv = type("S", (), {"host": "127.0.0.1", "port": port})()
        deadline = time.monotonic() + 60
        while True:
            try:
                if request(srv, "/")[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail(f"cartlab serve did not start: {log.read_text()}")
            time.sleep(0.2)
        for path in (f"/?subject={SEED_SUBJECT}", f"/{SEED_SUBJECT}", f"/session/{SEED_SUBJECT}/download/x?w=",
                     f"/lib/..%2f{SEED_SUBJECT}"):
            request(srv, path)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    text = Path(log).read_text(encoding="utf-8", errors="replace")
    assert "cartlab dashboard on http://127.0.0.1" in text  # the output was captured
    assert SEED_SUBJECT not in text
    assert "GET /" not in text
