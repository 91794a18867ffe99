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

from .errors import ApiError

__all__ = ["FrontDoor", "SignInLimiter", "client_key", "client_prefix", "docs_policy", "internal_error", "too_many_attempts",
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
    return _network(host, 32, 64)


def client_prefix(host: str | None) -> str:
    """The wider network an address shares a budget with once too many addresses are tracked: its IPv4
    /24 or its IPv6 /48 (what one site or one tunnel gets), so a flood from one network slows only it."""
    return _network(host, 24, 48)


def _network(host: str | None, v4_bits: int, v6_bits: int) -> str:
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    bits = v4_bits if isinstance(address, ipaddress.IPv4Address) else v6_bits
    network = ipaddress.ip_network((address, bits), strict=False)
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


@dataclass
class _Window:
    started: float
    failures: int = 0


class _Windows:
    """At most `size` windows, kept in the order they started (so the expired ones come first)."""

    def __init__(self, size: int) -> None:
        self.size, self.windows = size, OrderedDict()

    def expire(self, before: float) -> None:
        while self.windows:
            key, oldest = next(iter(self.windows.items()))
            if oldest.started > before:
                break
            del self.windows[key]

    @property
    def full(self) -> bool:
        return len(self.windows) >= self.size


class SignInLimiter:
    """At most `attempts` failed token checks per client address per `window_s` seconds, in this process.

    Memory is bounded too: at most `addresses` windows of addresses, and as many of wider networks. When
    that many addresses are tracked, a new address shares its network's window (IPv4 /24, IPv6 /48);
    when that many networks are tracked too, every new one shares one last window. A flood of addresses
    slows the networks it comes from first, and never grows memory or lifts the bound of those counted.
    """

    SHARED = "*"

    def __init__(self, attempts: int, window_s: float, addresses: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts, self.window_s, self.clock = attempts, window_s, clock
        self.addresses, self.networks = _Windows(addresses), _Windows(addresses)
        self.shared: _Window | None = None

    @property
    def windows(self) -> dict[str, _Window]:
        """Every window held (for the tests and the curious)."""
        return {**self.addresses.windows, **self.networks.windows, **({self.SHARED: self.shared} if self.shared else {})}

    def wait_s(self, key: str, network: str | None = None) -> int:
        """Seconds before `key` (of `network`) may try again: 0 when it may try now."""
        now = self._now()
        window = self._window(key, network or key)
        if window is None or window.failures < self.attempts:
            return 0
        return max(1, math.ceil(window.started + self.window_s - now))

    def failed(self, key: str, network: str | None = None) -> None:
        now = self._now()
        window = self._window(key, network or key)
        if window is None:
            window = _Window(now)
            if not self.addresses.full:
                self.addresses.windows[key] = window
            elif not self.networks.full:
                self.networks.windows[network or key] = window
            else:
                self.shared = window
        window.failures += 1

    def _now(self) -> float:
        now = self.clock()
        self.addresses.expire(now - self.window_s)
        self.networks.expire(now - self.window_s)
        if self.shared is not None and self.shared.started <= now - self.window_s:
            self.shared = None
        return now

    def _window(self, key: str, network: str) -> _Window | None:
        if key in self.addresses.windows or not self.addresses.full:
            return self.addresses.windows.get(key)
        if network in self.networks.windows or not self.networks.full:
            return self.networks.windows.get(network)
        return self.shared


def too_many_attempts(wait_s: int) -> ApiError:
    return ApiError(429, "too_many_attempts", f"Too many failed token checks from your address: try again in {wait_s} s.",
                    headers={"Retry-After": str(wait_s)})


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
