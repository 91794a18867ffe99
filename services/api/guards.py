"""The page's front door: what every answer tells the browser, which writes a browser may make with the
session cookie, and how fast anyone may guess the token.

- Every answer (errors included) carries a Content-Security-Policy with no inline script and no framing,
  `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and a same-origin `Referrer-Policy`.
- A state-changing request (POST, PUT, PATCH, DELETE) that carries the session cookie and no
  `Authorization: Bearer` must come from the page itself: a same-origin `Origin` or, when a browser or
  proxy leaves `Origin` out, the header the page sets on every call (`X-Requested-With`). SameSite=Strict
  does not do this: another port, or any sibling subdomain, is the same *site* and gets the cookie.
  Partners calling with the bearer token are not affected (a browser never adds a Bearer header by itself,
  and the API refuses a wrong one instead of falling back to the cookie).
- Failed sign-ins are counted per client address (an IPv6 /64 counts as one address) in a fixed window:
  past the budget, `POST /session` answers 429 with `Retry-After` without looking at the token.

"Same origin" is the request's own scheme and `Host`. Behind a TLS proxy the scheme and the client
address are the proxy's `X-Forwarded-Proto` and `X-Forwarded-For`, which uvicorn honours only from the
addresses in `FORWARDED_ALLOW_IPS` (loopback by default); the proxy must pass `Host` on unchanged.
"""

import base64
import hashlib
import ipaddress
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FrontDoor", "SignInLimiter", "client_key", "docs_policy", "internal_error", "too_many_attempts",
           "PAGE_HEADER", "SECURITY_HEADERS"]

# Everything the page needs comes from its own origin; nothing runs inline, nothing may frame it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # for browsers that predate frame-ancestors
    "X-Content-Type-Options": "nosniff",
    # Not "no-referrer": under it Chromium sends `Origin: null` on a same-origin form post (checked), and the
    # cross-site check below could no longer tell the page from a stranger. Other sites get no Referer at all.
    "Referrer-Policy": "same-origin",
}
# Set by the page (api.js) on every call. A page of another origin cannot add it without a CORS preflight,
# which this API never grants.
PAGE_HEADER = "X-Requested-With"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})


class FrontDoor:
    """ASGI middleware: the security headers on every answer, and no cross-site writes with the cookie.
    Install it outermost, so that the answers of every other middleware carry the headers too."""

    def __init__(self, app: ASGIApp, cookie_names: Iterable[str]) -> None:
        self.app, self.cookie_names = app, tuple(cookie_names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send)
        reason = cross_site_reason(Request(scope), self.cookie_names)
        if reason:
            await JSONResponse({"code": "cross_site_request", "message": reason}, status_code=403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _with_security_headers(send: Send) -> Send:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            for name, value in SECURITY_HEADERS.items():
                headers.setdefault(name, value)  # a route may set a policy of its own (/docs does)
        await send(message)

    return sending


def cross_site_reason(request: Request, cookie_names: tuple[str, ...]) -> str | None:
    """Why this request is refused as a cross-site write, or None when it may go on."""
    if request.method in SAFE_METHODS or not any(name in request.cookies for name in cookie_names):
        return None
    if request.headers.get("authorization", "").lower().startswith("bearer "):
        return None  # a program with the token, never a browser's ambient credential
    fetch_site = request.headers.get("sec-fetch-site", "")
    if fetch_site in ("cross-site", "same-site"):
        return f"This request came from another site ({fetch_site}): only the Clients page itself may change things with its session."
    origin = request.headers.get("origin")
    if origin is not None:
        if same_origin(origin, request.scope.get("scheme", "http"), request.headers.get("host", "")):
            return None
        return f"This request came from another origin ({origin[:100]}): only the Clients page itself may change things with its session."
    if request.headers.get(PAGE_HEADER):
        return None
    return (f"A change made with the page's session needs a same-origin Origin header or {PAGE_HEADER}; "
            "programs use Authorization: Bearer <token>.")


_DEFAULT_PORTS = {"http": 80, "https": 443}


def same_origin(origin: str, scheme: str, host: str) -> bool:
    """Whether `Origin` names this server as the request reached it: the same scheme, host and port."""
    mine = _origin(f"{scheme}://{host}")
    return mine is not None and _origin(origin) == mine


# A bare scheme://host[:port]: anything else ("null", a path, credentials) is no origin of ours.
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\s/:?#@\[\]]+)(?::(?P<port>\d{1,5}))?")


def _origin(url: str) -> tuple[str, str, int] | None:
    match = _ORIGIN.fullmatch(url)
    if not match:
        return None
    port = int(match["port"]) if match["port"] else _DEFAULT_PORTS[match["scheme"]]
    return (match["scheme"], match["host"].lower(), port) if 0 < port < 65536 else None


# ---- sign-in attempts ----

def client_key(host: str | None) -> str:
    """The address a sign-in budget belongs to: an IPv4 address, or an IPv6 /64 (one subscriber's
    network hands out as many addresses as it likes), or the raw name of a non-IP client."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass
class _Window:
    started: float
    failures: int = 0


class SignInLimiter:
    """At most `attempts` failed sign-ins per client address per `window_s` seconds, in this process.

    Memory is bounded too: at most `addresses` windows are kept (oldest first, so expired ones are dropped
    cheaply from the front). When that many live windows are held, every address not already tracked
    shares one more window: a flood of addresses slows sign-in for new addresses until windows expire,
    and never grows memory or lifts the per-address bound of those already counted.
    """

    OVERFLOW = "*"

    def __init__(self, attempts: int, window_s: float, addresses: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window_s, self.addresses, self.clock = attempts, window_s, addresses, clock
        self.windows: OrderedDict[str, _Window] = OrderedDict()

    def wait_s(self, key: str) -> int:
        """Seconds before `key` may try again: 0 when it may try now."""
        window = self._window(key, self._now())
        if window is None or window.failures < self.attempts:
            return 0
        return max(1, math.ceil(window.started + self.window_s - self._now()))

    def failed(self, key: str) -> None:
        now = self._now()
        window = self._window(key, now)
        if window is None:
            window = self.windows.setdefault(key if len(self.windows) < self.addresses else self.OVERFLOW, _Window(now))
        window.failures += 1

    def _now(self) -> float:
        now = self.clock()
        while self.windows:  # windows are kept in the order they started: the expired ones come first
            key, oldest = next(iter(self.windows.items()))
            if oldest.started + self.window_s > now:
                break
            del self.windows[key]
        return now

    def _window(self, key: str, now: float) -> _Window | None:
        if key in self.windows:
            return self.windows[key]
        return self.windows.get(self.OVERFLOW) if len(self.windows) >= self.addresses else None


def too_many_attempts(wait_s: int) -> JSONResponse:
    return JSONResponse(
        {"code": "too_many_attempts", "message": f"Too many sign-in attempts from your address: try again in {wait_s} s."},
        status_code=429, headers={"Retry-After": str(wait_s)},
    )


# ---- the answers built outside the middleware ----

async def internal_error(_: Request, __: Exception) -> JSONResponse:
    """An unexpected failure. Starlette sends this from its outermost layer, past FrontDoor, so the
    headers are set here; the error itself is logged by the server."""
    return JSONResponse({"code": "internal_error", "message": "The server failed to answer this request; it is logged."},
                        status_code=500, headers=SECURITY_HEADERS)


_INLINE_SCRIPT = re.compile(rb"<script>(.*?)</script>", re.DOTALL)


def docs_policy(html: bytes) -> str:
    """The policy of the Swagger UI page (/docs): its bundle and style from the CDN FastAPI names, and
    only its own inline script, allowed by hash."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s).digest()).decode()}'" for s in _INLINE_SCRIPT.findall(html))
    return (f"default-src 'none'; script-src https://cdn.jsdelivr.net {hashes}; "
            "style-src https://cdn.jsdelivr.net 'unsafe-inline'; img-src 'self' data: https://fastapi.tiangolo.com; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
