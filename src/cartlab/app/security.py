"""Access control of ``cartlab serve`` as an ASGI middleware wrapped around the Shiny app (issue 17 §4).

* **Loopback by default.** :func:`check_bind` refuses a non-loopback host unless a token is set
  (``--token`` or ``CARTLAB_TOKEN``): a dashboard of patient data is never served to a network
  without authentication.
* **A token on every request.** With a token, every HTTP request and websocket handshake must carry
  it: ``Authorization: Bearer <token>``, or the cookie set after a first visit with ``?token=<token>``
  (``HttpOnly; SameSite=Strict``; the browser is then redirected to the same URL without the token,
  so it stays out of the history). Missing: 401; wrong: 403. Comparisons use
  :func:`hmac.compare_digest` (constant time); the cookie holds an HMAC of the token, not the token.
* **No path traversal.** A request path containing a ``..`` segment, a backslash, a NUL or an
  absolute path after percent-decoding (``%2e%2e%2f``, ``..%2f``, double encoding) is refused with
  400 before it reaches any route; download file names are sanitised by :func:`safe_filename`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import socket
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, unquote, urlencode

from cartlab.errors import InputError

COOKIE = "cartlab_token"
ENV_TOKEN = "CARTLAB_TOKEN"


def is_loopback(host: str) -> bool:
    """``127.0.0.1``, ``::1``, ``localhost`` (and any 127/8 address) are loopback; anything else is not
    (``0.0.0.0`` and ``::`` listen on every interface)."""
    h = host.strip().strip("[]")
    if h.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        try:  # a host name: loopback only if every address it resolves to is
            infos = socket.getaddrinfo(h, None)
        except OSError:
            return False
        return bool(infos) and all(ipaddress.ip_address(i[4][0].split("%")[0]).is_loopback for i in infos)


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on a non-loopback ``host`` without a token (an :class:`InputError`: exit 2)."""
    if not is_loopback(host) and not token:
        raise InputError(
            f"refusing to serve on {host}: it is not a loopback address and no token is set",
            hint="give --token T (or set CARTLAB_TOKEN) to require it on every request, or serve on 127.0.0.1")


def safe_filename(name: str, default: str = "table") -> str:
    """A download file name without any path: only letters, digits, ``._-`` (others become ``_``),
    no leading dot, at most 120 characters; ``default`` when nothing is left."""
    base = re.split(r"[\\/]", str(name))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", base).lstrip(".")
    base = re.sub(r"\.{2,}", ".", base)[:120]
    return base or default


def _decoded_forms(path: str, rounds: int = 3) -> list[str]:
    out, cur = [path], path
    for _ in range(rounds):
        nxt = unquote(cur)
        if nxt == cur:
            break
        out.append(nxt)
        cur = nxt
    return out


def is_traversal(raw_path: str) -> bool:
    """Whether a request path tries to leave its route: a ``..`` segment, a backslash, a NUL, or a
    doubled slash/absolute path inside it, in the raw or (repeatedly) percent-decoded form."""
    for p in _decoded_forms(raw_path):
        if "\x00" in p or "\\" in p:
            return True
        if any(seg == ".." for seg in p.split("/")):
            return True
        if "//" in p:
            return True
        if re.search(r"/[A-Za-z]:", p):  # a Windows drive letter
            return True
    return False


class TokenGuard:
    """ASGI middleware: path-traversal refusal and (with a token) token authentication."""

    def __init__(self, app, token: str | None = None):
        self.app = app
        self.token = token or None
        self._cookie_value = (hmac.new(token.encode(), b"cartlab-dashboard-session", hashlib.sha256).hexdigest()
                              if token else None)

    # -- checks
    def _check(self, scope) -> tuple[str, str | None]:
        """``("ok" | "missing" | "wrong", query string with the token removed or None)``."""
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        auth = headers.get("authorization", "")
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer":
                ok = hmac.compare_digest(value.strip().encode(), self.token.encode())
                return ("ok" if ok else "wrong"), None
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no credential
            cookie = SimpleCookie()
        if COOKIE in cookie:
            ok = hmac.compare_digest(cookie[COOKIE].value.encode(), self._cookie_value.encode())
            if ok:
                return "ok", None
            wrong = True
        else:
            wrong = False
        qs = scope.get("query_string", b"").decode("latin-1")
        pairs = parse_qsl(qs, keep_blank_values=True)
        given = [v for k, v in pairs if k == "token"]
        if given:
            ok = hmac.compare_digest(given[0].encode(), self.token.encode())
            rest = urlencode([(k, v) for k, v in pairs if k != "token"])
            return ("ok" if ok else "wrong"), (rest if ok else None)
        return ("wrong" if wrong else "missing"), None

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope.get("path", "")
        path = path.split("?", 1)[0]
        if is_traversal(path) or is_traversal(scope.get("path", "")):
            return await _deny(kind, receive, send, 400, "bad request path")
        if self.token is None:
            return await self.app(scope, receive, send)
        verdict, rest = self._check(scope)
        if verdict == "missing":
            return await _deny(kind, receive, send, 401, "a token is required (Authorization: Bearer T, or ?token=T once)",
                               {"www-authenticate": "Bearer"})
        if verdict == "wrong":
            return await _deny(kind, receive, send, 403, "wrong token")
        if rest is not None and kind == "http":  # ?token= accepted: set the cookie, drop the token from the URL
            location = scope.get("root_path", "") + scope.get("path", "/") + (f"?{rest}" if rest else "")
            cookie = f"{COOKIE}={self._cookie_value}; Path=/; HttpOnly; SameSite=Strict"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0"), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": b""})
            return
        return await self.app(scope, receive, send)


async def _deny(kind: str, receive, send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    if kind == "websocket":
        await receive()  # websocket.connect
        # closing before accepting makes the server answer the handshake with 403
        await send({"type": "websocket.close", "code": 1008})
        return
    body = f"{status} {message}\n".encode()
    hdrs = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
