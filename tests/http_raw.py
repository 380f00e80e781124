"""One raw HTTP request for the dashboard's security tests: the path is sent exactly as given (no
normalisation), and ``Host`` as given in ``headers`` (else the address)."""

from __future__ import annotations

import http.client


def raw_request(host: str, port: int, path: str, headers: dict | None = None, method: str = "GET"):
    """(status, headers with lower-case names, body)."""
    conn = http.client.HTTPConnection(host, port, timeout=10)
    headers = dict(headers or {})
    conn.putrequest(method, path, skip_host="Host" in headers, skip_accept_encoding=True)
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.endheaders()
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body
