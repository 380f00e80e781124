"""Access control of ``cartlab serve`` as an ASGI middleware wrapped around the Shiny app (issue 17 §4).

* **Loopback by default.** :func:`check_bind` refuses a non-loopback host unless a token is set
  (``--token`` or ``CARTLAB_TOKEN``): a dashboard of patient data is never served to a network
  without authentication.
* **A token on every request.** With a token, every HTTP request and websocket handshake must carry
  it: ``Authorization: Bearer <token>``, or the cookie set after a first visit with ``?token=<token>``
  (``HttpOnly; SameSite=Strict``; the browser is then redirected to the same URL without the token,
  so it stays out of the history). Missing: 401; wrong: 403 (a websocket handshake is refused with 403
  either way). Tokens are compared as UTF-8 bytes. Comparisons use
  :func:`hmac.compare_digest` (constant time); the cookie holds an HMAC of the token, not the token.
* **Only its own origin.** Every request's ``Host`` header must name the dashboard
  (:class:`HostPolicy`: ``127.0.0.1``, ``localhost``, ``[::1]``, the ``--host`` given, and the hosts of
  ``--allowed-origin``), otherwise 403 -- a DNS-rebinding page (``Host: evil.example``) reads nothing.
  A request carrying an ``Origin`` header (every browser websocket handshake does) must come from the
  dashboard's own origin (``Origin`` equal to ``scheme://Host``) or from an ``--allowed-origin`` (a
  reverse proxy's public origin), otherwise 403 -- another web page cannot open the websocket
  (cross-site websocket hijacking), with or without a token.
* **Security headers on every response** (:data:`SECURITY_HEADERS`, OWASP Secure Headers Project):
  ``Content-Security-Policy: frame-ancestors 'none'`` and ``X-Frame-Options: DENY`` (no other site
  can frame the dashboard: clickjacking), ``X-Content-Type-Options: nosniff``,
  ``Referrer-Policy: no-referrer``, and ``Cache-Control: no-store`` on everything but the versioned
  JavaScript/CSS libraries under ``/lib/`` (pages and CSV downloads of patient data stay out of the
  browser's disk cache). No ``script-src`` policy: Shiny and plotly need their inline scripts.
* **The cookie** is ``HttpOnly; SameSite=Strict``, a session cookie, plus ``Secure`` when the request
  came over https: uvicorn with TLS, a trusted proxy's ``X-Forwarded-Proto: https`` (uvicorn only
  believes it from ``--forwarded-allow-ips``, by default 127.0.0.1), or a Host naming an https
  ``--allowed-origin``. Its value is an HMAC of the token and a random salt drawn when the server
  starts, so restarting the dashboard invalidates every cookie it gave out.
* **No path traversal.** A request path containing a ``..`` segment, a backslash, a NUL or another
  control character (an open redirect through ``?token=``), or an absolute path after percent-decoding (``%2e%2e%2f``, ``..%2f``, double encoding) is refused with
  400 before it reaches any route; download file names are sanitised by :func:`safe_filename`.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import re
import socket
from http.cookies import SimpleCookie
from urllib.parse import unquote, unquote_to_bytes, urlencode, urlsplit

from cartlab.errors import InputError

COOKIE = "cartlab_token"
ENV_TOKEN = "CARTLAB_TOKEN"
ENV_ORIGINS = "CARTLAB_ALLOWED_ORIGINS"
#: a token shorter than this on a non-loopback host gets a warning
MIN_TOKEN_LENGTH = 16
#: host names that always mean this machine
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
_WILDCARDS = ("0.0.0.0", "::", "")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: sent with every HTTP response and refused websocket handshake (OWASP Secure Headers Project); no
#: script-src: Shiny and plotly run inline scripts
SECURITY_HEADERS = (
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)
NO_STORE = (b"cache-control", b"no-store")
#: path prefixes of the versioned public libraries (jQuery, Bootstrap, Shiny, plotly.js), which may be cached
CACHEABLE_PREFIXES = ("/lib/",)


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


def bind_host(host: str) -> str:
    """The address to listen on as ``--host`` gave it, without the brackets of a URL-style IPv6 literal
    (``[::1]`` -> ``::1``; uvicorn and the socket API take the bare address); unbalanced brackets are
    an :class:`InputError`."""
    h = host.strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1].strip()
    if "[" in h or "]" in h:
        raise InputError(f"--host {host!r}: not an address", hint="write an IPv6 address as ::1 or [::1]")
    return h


def check_bind(host: str, token: str | None) -> None:
    """Refuse to listen on a non-loopback ``host`` without a token (an :class:`InputError`: exit 2)."""
    if not is_loopback(host) and not token:
        raise InputError(
            f"refusing to serve on {host}: it is not a loopback address and no token is set",
            hint="give --token T (or set CARTLAB_TOKEN) to require it on every request, or serve on 127.0.0.1")


def check_token(token: str | None, host: str) -> list[str]:
    """Refuse a token that cannot be sent (surrounding whitespace, a control character: an
    :class:`InputError`) and return warnings: a token shorter than :data:`MIN_TOKEN_LENGTH` characters
    on a non-loopback host is easy to guess."""
    if not token:
        return []
    if token != token.strip() or _CONTROL.search(token):
        raise InputError("the token has surrounding whitespace or a control character: it cannot be sent in an "
                         "Authorization header", hint="choose a token of letters and digits, e.g. "
                         "CARTLAB_TOKEN=$(openssl rand -hex 16)")
    if not is_loopback(host) and len(token) < MIN_TOKEN_LENGTH:
        return [(f"the token has {len(token)} characters; on a non-loopback host use at least {MIN_TOKEN_LENGTH} "
                 "random ones (e.g. CARTLAB_TOKEN=$(openssl rand -hex 16))")]
    return []


def parse_origin(text: str) -> str:
    """An origin ``scheme://host[:port]`` normalised (lower case, no default port, no trailing slash);
    anything else (a path, a query, another scheme) is an :class:`InputError`."""
    raw = text.strip().rstrip("/")
    try:
        u = urlsplit(raw)
        port = u.port
    except ValueError:
        u, port = None, None
    if u is None or u.scheme not in ("http", "https") or not u.hostname or u.path or u.query or u.fragment \
            or u.username or u.password:
        raise InputError(f"--allowed-origin {text!r}: write an origin as scheme://host[:port], e.g. "
                         "https://dash.example.org")
    host = u.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    default = 443 if u.scheme == "https" else 80
    return f"{u.scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def split_host(value: str) -> tuple[str, int | None] | None:
    """``(host, port)`` of a ``Host`` header (``[::1]:8050`` -> ``("::1", 8050)``; lower case, a
    trailing dot dropped); None when malformed."""
    v = value.strip().lower()
    if not v or _CONTROL.search(v) or any(c in v for c in "/\\@ ?#"):
        return None
    if v.startswith("["):
        end = v.find("]")
        if end < 0:
            return None
        host, rest = v[1:end], v[end + 1:]
    elif v.count(":") == 1:
        host, port_text = v.split(":")
        rest = ":" + port_text
    elif ":" in v:  # an IPv6 address without brackets is not a Host
        return None
    else:
        host, rest = v, ""
    port = None
    if rest:
        if not rest.startswith(":") or not rest[1:].isdigit():
            return None
        port = int(rest[1:])
    host = host.rstrip(".")
    return (host, port) if host else None


class HostPolicy:
    """Which ``Host`` headers and ``Origin`` headers a dashboard bound to ``host:port`` accepts.

    Hosts: the loopback names (``127.0.0.1``, ``localhost``, ``::1``), the bound ``host``, the hosts of
    ``allowed_origins``; on a wildcard bind (``0.0.0.0``, ``::``; a token is then required) also any IP
    address literal (DNS rebinding needs a name the attacker controls) and this machine's host names.
    When ``port`` is known, a Host naming a loopback name or the bound host must carry that port.
    Origins: the request's own (``scheme://Host``, with an accepted Host) or one of ``allowed_origins``.
    """

    def __init__(self, host: str | None = None, port: int | None = None, allowed_origins=()):
        self.port = port or None
        self.origins = {parse_origin(o) for o in allowed_origins}
        bound = (host or "127.0.0.1").strip().strip("[]").lower()
        self.wildcard = bound in _WILDCARDS
        self.direct = set(LOOPBACK_NAMES) | ({bound} if not self.wildcard else set())
        self.proxied: set[tuple[str, int | None]] = set()
        for o in self.origins:
            u = urlsplit(o)
            self.proxied.add((u.hostname, u.port or (443 if u.scheme == "https" else 80)))
        if self.wildcard:
            names = {socket.gethostname().lower()}
            try:
                names.add(socket.getfqdn().lower())
            except OSError:  # pragma: no cover
                pass
            self.direct |= {n for n in names if n}
        self.https_hosts = {(urlsplit(o).hostname, urlsplit(o).port or 443) for o in self.origins
                            if o.startswith("https://")}

    def https_host(self, value: str | None) -> bool:
        """Whether a ``Host`` header names an https ``--allowed-origin`` (a TLS reverse proxy's)."""
        parsed = split_host(value or "")
        return parsed is not None and (parsed[0], parsed[1] or 443) in self.https_hosts

    def host_ok(self, value: str | None) -> bool:
        parsed = split_host(value or "")
        if parsed is None:
            return False
        host, port = parsed
        if any(host == h and (port is None or port == p) for h, p in self.proxied):
            return True
        is_ip = False
        try:
            ipaddress.ip_address(host)
            is_ip = True
        except ValueError:
            pass
        if host in self.direct or (self.wildcard and is_ip):
            return self.port is None or (port if port is not None else 80) == self.port
        return False

    def origin_ok(self, origin: str, host_header: str, secure: bool = False) -> bool:
        try:
            o = parse_origin(origin)
        except InputError:
            return False  # "null", a path, another scheme
        if o in self.origins:
            return True
        scheme = urlsplit(o).scheme
        try:
            own = parse_origin(f"{scheme}://{host_header.strip()}")
        except InputError:
            return False
        return o == own and self.host_ok(host_header)


def allowed_origins_from_env() -> list[str]:
    """The origins in ``CARTLAB_ALLOWED_ORIGINS`` (separated by commas or spaces)."""
    import os

    return [o for o in re.split(r"[,\s]+", os.environ.get(ENV_ORIGINS, "")) if o]


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
    doubled slash/absolute path inside it, a control character (tab, CR, LF ...), in the raw or (repeatedly) percent-decoded form."""
    for p in _decoded_forms(raw_path):
        if _CONTROL.search(p) or "\\" in p:
            return True
        if any(seg == ".." for seg in p.split("/")):
            return True
        if "//" in p:
            return True
        if re.search(r"/[A-Za-z]:", p):  # a Windows drive letter
            return True
    return False


class TokenGuard:
    """ASGI middleware: path-traversal refusal, the Host/Origin check (:class:`HostPolicy`) and (with a
    token) token authentication."""

    def __init__(self, app, token: str | None = None, policy: HostPolicy | None = None):
        self.app = app
        self.token = token or None
        self.policy = policy or HostPolicy()
        self._token_bytes = token.encode("utf-8") if token else None
        # a random salt per server process: a restart invalidates every cookie given out before
        self._cookie_value = (hmac.new(token.encode("utf-8"), b"cartlab-dashboard-session" + os.urandom(16),
                                       hashlib.sha256).hexdigest() if token else None)

    # -- checks
    def _check(self, scope) -> tuple[str, bytes | None]:
        """``("ok" | "missing" | "wrong", query string with the token removed or None)``. Tokens are
        compared as UTF-8 bytes: the header's raw bytes, the query's percent-decoded bytes."""
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        auth = headers.get(b"authorization", b"")
        if auth:
            scheme, _, value = auth.partition(b" ")
            if scheme.lower() == b"bearer":
                ok = hmac.compare_digest(value.strip(b" \t"), self._token_bytes)
                return ("ok" if ok else "wrong"), None
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # noqa: BLE001 - a malformed cookie header is no credential
            cookie = SimpleCookie()
        if COOKIE in cookie:
            ok = hmac.compare_digest(cookie[COOKIE].value.encode("latin-1"), self._cookie_value.encode())
            if ok:
                return "ok", None
            wrong = True
        else:
            wrong = False
        pairs = query_pairs(scope.get("query_string", b""))
        given = [v for k, v in pairs if k == b"token"]
        if given:
            ok = hmac.compare_digest(given[0], self._token_bytes)
            rest = urlencode([(k, v) for k, v in pairs if k != b"token"]).encode("ascii")  # quotes the bytes
            return ("ok" if ok else "wrong"), (rest if ok else None)
        return ("wrong" if wrong else "missing"), None

    def _origin_problem(self, scope) -> str | None:
        """Why the request is not from the dashboard's own origin (None: it is)."""
        host = origin = None
        for k, v in scope.get("headers", []):
            k = k.lower()
            if k == b"host" and host is None:
                host = v.decode("latin-1")
            elif k == b"origin" and origin is None:
                origin = v.decode("latin-1")
        if not self.policy.host_ok(host):
            return "this Host is not the dashboard's (see --allowed-origin)" if host else "no Host header"
        if origin is not None and not self.policy.origin_ok(origin, host):
            return "cross-origin request refused (Origin is not the dashboard's; see --allowed-origin)"
        return None

    def _secure(self, scope) -> bool:
        """Whether the request came over https (uvicorn's TLS, or ``X-Forwarded-Proto`` from a proxy
        uvicorn trusts: both set the scope's scheme) or through an https ``--allowed-origin``."""
        if scope.get("scheme") in ("https", "wss"):
            return True
        host = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k.lower() == b"host"), None)
        return self.policy.https_host(host)

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        raw = scope.get("raw_path")
        path = raw.decode("latin-1") if raw else scope.get("path", "")
        path = path.split("?", 1)[0]
        send = with_security_headers(send, cacheable=path.startswith(CACHEABLE_PREFIXES)
                                     and not is_traversal(path))
        if is_traversal(path) or is_traversal(scope.get("path", "")):
            return await _deny(scope, receive, send, 400, "bad request path")
        problem = self._origin_problem(scope)
        if problem is not None:
            return await _deny(scope, receive, send, 403, problem)
        if self.token is None:
            return await self.app(scope, receive, send)
        verdict, rest = self._check(scope)
        if verdict == "missing":
            return await _deny(scope, receive, send, 401,
                               "a token is required (Authorization: Bearer T, or ?token=T once)",
                               {"www-authenticate": "Bearer"})
        if verdict == "wrong":
            return await _deny(scope, receive, send, 403, "wrong token")
        if rest is not None and kind == "http":  # ?token= accepted: set the cookie, drop the token from the URL
            location = same_origin_location(scope.get("root_path", ""), path, rest)
            if location is None:
                return await _deny(scope, receive, send, 400, "bad request path")
            cookie = f"{COOKIE}={self._cookie_value}; Path=/; HttpOnly; SameSite=Strict"
            cookie += "; Secure" if self._secure(scope) else ""
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location), (b"set-cookie", cookie.encode()),
                                    (b"content-length", b"0"), (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": b""})
            return
        return await self.app(scope, receive, send)


def with_security_headers(send, cacheable: bool = False):
    """``send`` adding :data:`SECURITY_HEADERS` (replacing the app's own of the same names) to every
    response start, and ``Cache-Control: no-store`` unless ``cacheable`` (a versioned library file)."""
    names = {k for k, _ in SECURITY_HEADERS} | ({NO_STORE[0]} if not cacheable else set())
    extra = list(SECURITY_HEADERS) + ([NO_STORE] if not cacheable else [])

    async def wrapped(message):
        if message.get("type") in ("http.response.start", "websocket.http.response.start"):
            kept = [(k, v) for k, v in message.get("headers", []) if bytes(k).lower() not in names]
            message = {**message, "headers": kept + extra}
        await send(message)

    return wrapped


def query_pairs(query: bytes) -> list[tuple[bytes, bytes]]:
    """A query string's ``(name, value)`` pairs, percent-decoded to bytes (``+`` is a space): a
    token is then compared as the UTF-8 bytes it was sent as."""
    out = []
    for part in query.replace(b";", b"&").split(b"&"):
        if not part:
            continue
        k, _, v = part.partition(b"=")
        out.append((unquote_to_bytes(k.replace(b"+", b" ")), unquote_to_bytes(v.replace(b"+", b" "))))
    return out


def same_origin_location(root_path: str, raw_path: str, query: bytes) -> bytes | None:
    """The redirect target after ``?token=``: the request's own path (as sent, percent-encoded) and
    the rest of its query -- a same-origin path: printable ASCII, starting with one ``/``, no
    backslash; None otherwise (the request is refused with 400)."""
    target = (root_path or "") + raw_path + (("?" + query.decode("ascii")) if query else "")
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(not (0x21 <= ord(c) <= 0x7E) for c in target):
        return None
    if target.startswith("/%2f") or target.lower().startswith("/%5c") or is_traversal(target.split("?", 1)[0]):
        return None
    return target.encode("ascii")


async def _deny(scope, receive, send, status: int, message: str, headers: dict[str, str] | None = None) -> None:
    """Refuse with ``status`` and a short plain-text reason. A websocket handshake is refused with 403
    (the status a browser sees for any refused handshake), with the reason as its body when the server
    supports the ASGI denial-response extension."""
    body = f"{status if scope['type'] == 'http' else 403} {message}\n".encode()
    hdrs = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store")]
    hdrs += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if "websocket.http.response" in (scope.get("extensions") or {}):
            await send({"type": "websocket.http.response.start", "status": 403, "headers": hdrs})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # closing before accepting makes the server answer the handshake with 403
            await send({"type": "websocket.close", "code": 1008})
        return
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
