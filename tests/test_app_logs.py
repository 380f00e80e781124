"""No patient data in the dashboard's logs (issue 17): errors and warnings inside the server are
logged as their type and code location only (cartlab.app.logs.redacted_errors)."""

from __future__ import annotations

import io
import logging
import traceback
import warnings

import pytest

from cartlab.app.logs import WITHHELD, error_line, redacted_errors

SECRET = "CD7-AML-001 has 183945 copies"


def _raise():
    raise ValueError(SECRET)


def _check(text: str, kind: str = "ValueError") -> None:
    assert SECRET not in text and "CD7-AML-001" not in text and "183945" not in text
    assert f"cartlab dashboard: {kind} at " in text and WITHHELD in text
    assert "raise ValueError" not in text  # no source line either


def test_print_exc_and_print_exception_are_redacted():
    out = io.StringIO()
    with redacted_errors():
        try:
            _raise()
        except ValueError as exc:
            traceback.print_exc(file=out)
            traceback.print_exception(exc, file=out)                              # one-argument form
            traceback.print_exception(type(exc), exc, exc.__traceback__, file=out)  # three-argument form
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    for line in lines:
        _check(line)
        assert "tests/test_app_logs.py" not in line and "test_app_logs.py:" in line and "(_raise)" in line


def test_logged_exception_and_warning_are_redacted():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("cartlab.test_app_logs")
    log.addHandler(handler)
    try:
        with redacted_errors():
            try:
                _raise()
            except ValueError:
                log.error("Exception in ASGI application", exc_info=True)  # as uvicorn logs it
            warn_out = io.StringIO()
            warnings.showwarning(SECRET, UserWarning, __file__, 12, file=warn_out)
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert text.startswith("Exception in ASGI application\n")
    _check(text)
    _check(warn_out.getvalue(), "UserWarning")


def test_restored_after_and_disabled_with_debug():
    before = traceback.print_exc, traceback.print_exception, warnings.showwarning
    with redacted_errors(enabled=False):
        assert (traceback.print_exc, traceback.print_exception, warnings.showwarning) == before
    with pytest.raises(RuntimeError):
        with redacted_errors():
            raise RuntimeError("x")
    assert (traceback.print_exc, traceback.print_exception, warnings.showwarning) == before
    out = io.StringIO()
    try:
        _raise()
    except ValueError:
        traceback.print_exc(file=out)
    assert SECRET in out.getvalue()  # outside the context the full traceback is back


def test_error_line_without_traceback():
    assert error_line(KeyError, None) == f"cartlab dashboard: KeyError at unknown location; {WITHHELD}"


def test_location_is_the_innermost_cartlab_frame():
    from cartlab.units import conversion

    out = io.StringIO()
    with redacted_errors():
        try:
            conversion("furlongs", "10^9/L")
        except Exception:  # noqa: BLE001 - whatever the engine raises
            traceback.print_exc(file=out)
    assert out.getvalue().startswith("cartlab dashboard: ")
    assert " at cartlab/units" in out.getvalue() and "furlongs" not in out.getvalue()


@pytest.mark.parametrize("debug", [False, True])
def test_cartlab_serve_runs_the_server_redacted_unless_debug(monkeypatch, debug):
    from typer.testing import CliRunner

    import cartlab.cli.serve as serve
    from cartlab.app import logs
    from cartlab.cli import app
    from cartlab.datasets import seed_case_path

    seen = {}

    def fake_run_server(asgi, host, port):  # instead of uvicorn: which traceback printer is active
        seen["redacted"] = traceback.print_exc is logs._print_exc

    monkeypatch.setattr(serve, "run_server", fake_run_server)
    monkeypatch.delenv("CARTLAB_DEBUG", raising=False)
    args = (["--debug"] if debug else []) + ["serve", str(seed_case_path()), "--port", "0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == {"redacted": not debug}
    assert traceback.print_exc is not logs._print_exc  # restored when the server stops
