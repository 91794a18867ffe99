"""Which callback URLs we call: the rules for a webhook's destination, read once by everyone who checks one.

A callback URL is a door into whatever network the notifier sits in, so the rule is narrow:

- the URL is `https` (plain `http` only where the operator allows it, for development), absolute, with a
  host, no credentials (`user:pass@`), at most `MAX_URL_CHARS` printable ASCII characters;
- its host is a public one: not a literal loopback, private, link-local, multicast, reserved or unspecified
  address in any notation (`127.0.0.1`, `2130706433`, `0x7f.1`, `[::1]`, `[::ffff:10.0.0.1]`, ...), not
  `localhost` or a name that only a local network answers (a single label, `.local`, `.internal`, ...);
- unless the operator named the destination (`host` or `host:port`) in WEBHOOK_ALLOWED_DESTINATIONS.

`check_url` applies the rule to the text alone (when a request is accepted, and again before each delivery);
the notifier then resolves the host, refuses it unless every address is public (`is_public`), and connects
to the address it checked (services/notifier/webhook.py). One parser (httpx's, the one that sends) reads
the URL everywhere, so no two readings of one URL can differ.
"""

import ipaddress
import re
import socket
from dataclasses import dataclass

import httpx

__all__ = ["MAX_URL_CHARS", "CallbackPolicy", "CallbackRefused", "Destination", "check_form", "check_url",
           "is_public", "parse_destinations"]

MAX_URL_CHARS = 2000  # the longest URL every HTTP stack on the way takes
_PRINTABLE_URL = re.compile(r"[\x21-\x7e]+")
# Names only the machine itself or its local network answers (RFC 6761, RFC 6762, RFC 8375, ICANN's `.internal`),
# and Debian's loopback aliases.
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain")
# The last label of an IPv4 address in any notation a resolver takes: decimal, octal (0...) or hex (0x...).
_DESTINATION = re.compile(r"(?P<host>[a-z0-9][a-z0-9.-]*|\[[0-9a-f:.]+\])(?::(?P<port>[0-9]{1,5}))?", re.IGNORECASE)
_NUMERIC_LABEL = re.compile(r"(0x[0-9a-f]*|[0-9]+)", re.IGNORECASE)
# NAT64 prefixes (RFC 6052, RFC 8215): the IPv4 address in the last 32 bits is the one reached.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))


class CallbackRefused(ValueError):
    """A callback URL we will not call, and why, in words for the requester."""


@dataclass(frozen=True)
class Destination:
    """Where a checked callback URL points: its parsed form, and the host and port to connect to."""

    url: httpx.URL
    host: str  # lower case, IDNA-encoded, no brackets, no trailing dot
    port: int
    allowed: bool  # named in WEBHOOK_ALLOWED_DESTINATIONS: the address rule does not apply


@dataclass(frozen=True)
class CallbackPolicy:
    """What the operator allows beyond the rule: plain http, and destinations reached whatever their address."""

    allow_http: bool = False
    allowed: frozenset[str] = frozenset()  # "host" (any port) or "host:port", as `parse_destinations` wrote them

    @classmethod
    def of(cls, settings) -> "CallbackPolicy":
        return cls(settings.webhook_allow_http, frozenset(parse_destinations(settings.webhook_allowed_destinations)))

    def allows(self, host: str, port: int) -> bool:
        return _key(host) in self.allowed or _key(host, port) in self.allowed


def check_form(url: str) -> Destination:
    """The part of the rule that holds everywhere, whatever the operator allows: an absolute http(s) URL
    with a host and a port, no credentials, bounded printable ASCII."""
    if len(url) > MAX_URL_CHARS:
        raise CallbackRefused(f"callback_url is longer than {MAX_URL_CHARS} characters.")
    if not _PRINTABLE_URL.fullmatch(url):
        raise CallbackRefused("callback_url must be printable ASCII without spaces (percent-encode the rest).")
    try:
        parsed = httpx.URL(url)
        port = parsed.port or {"https": 443, "http": 80}.get(parsed.scheme, 0)
    except (httpx.InvalidURL, ValueError, TypeError, UnicodeError) as error:
        raise CallbackRefused(f"callback_url is not a valid URL ({_short(error)}).") from None
    if parsed.scheme not in ("https", "http"):
        raise CallbackRefused("callback_url must be an https:// URL.")
    if parsed.userinfo or "@" in _authority(url):
        raise CallbackRefused("callback_url must not carry credentials (user:password@): we sign our calls instead.")
    host = parsed.raw_host.decode("ascii").lower()
    if "\\" in _authority(url) or ".." in host or host.startswith("."):
        raise CallbackRefused("callback_url's host is not a plain host name (a backslash or an empty label).")
    host = host.removesuffix(".")
    if not host:
        raise CallbackRefused("callback_url must name a host.")
    if not 0 < port < 65536:
        raise CallbackRefused("callback_url names a port outside 1-65535.")
    return Destination(parsed, host, port, allowed=False)


def check_url(url: str, policy: CallbackPolicy) -> Destination:
    """The whole rule on the URL's text (no name is resolved): raises CallbackRefused, saying why."""
    destination = check_form(url)
    if destination.url.scheme == "http" and not policy.allow_http:
        raise CallbackRefused("callback_url must be an https:// URL (plain http is not allowed here).")
    if policy.allows(destination.host, destination.port):
        return Destination(destination.url, destination.host, destination.port, allowed=True)
    address = literal_address(destination.host)
    if address is not None and not is_public(address):
        raise CallbackRefused(f"callback_url must name a public host, not the address {address}.")
    if address is None and _is_local_name(destination.host):
        raise CallbackRefused(f"callback_url must name a public host, not “{destination.host}”.")
    return destination


def literal_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a host is written as, in any notation a resolver would take for one (`2130706433`,
    `0x7f.1`, `0177.0.0.1`, `127.1`, IPv6): None for a name. A host that looks like an address but is no
    valid one (`1.2.3.999999`) is refused: a resolver's reading of it is anyone's guess."""
    if ":" in host or "%" in host:  # IPv6 (httpx has taken the brackets off); a zone id (%25) is never public
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise CallbackRefused(f"callback_url's host “{host[:60]}” is not a valid address.") from None
    if not _NUMERIC_LABEL.fullmatch(host.rsplit(".", 1)[-1]):
        return None
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))  # the C library's reading, as getaddrinfo's
    except OSError:
        raise CallbackRefused(f"callback_url's host “{host[:60]}” is not a valid address.") from None


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is one of the public internet's: not loopback, private, shared (CGNAT),
    link-local, multicast, reserved, documentation or unspecified, also when an IPv6 address carries an
    IPv4 one (IPv4-mapped, 6to4, NAT64; Teredo and IPv4-compatible forms are not global anyway)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = address.ipv4_mapped or address.sixtofour or _nat64(address)
        if embedded is not None:
            return is_public(embedded)
        if address.is_site_local:
            return False
    return address.is_global and not (
        address.is_multicast or address.is_private or address.is_reserved or address.is_loopback
        or address.is_link_local or address.is_unspecified
    )


def parse_destinations(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """WEBHOOK_ALLOWED_DESTINATIONS, comma-separated `host` or `host:port` (IPv6 in brackets, names in their
    ASCII form), as the lower-case `host` or `host:port` the rule compares with. Anything else is a
    configuration error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    found = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        match = _DESTINATION.fullmatch(item)
        port = int(match["port"]) if match and match["port"] else None
        if match is None or (port is not None and not 0 < port < 65536):
            raise ValueError(f"WEBHOOK_ALLOWED_DESTINATIONS: “{item[:100]}” is not a host or host:port")
        host = match["host"].lower().removesuffix(".")
        if host.startswith("["):
            try:
                host = str(ipaddress.IPv6Address(host[1:-1]))
            except ValueError:
                raise ValueError(f"WEBHOOK_ALLOWED_DESTINATIONS: “{item[:100]}” is not an IPv6 address") from None
        found.append(_key(host, port))
    return tuple(found)


def _key(host: str, port: int | None = None) -> str:
    """A destination as the allow-list spells it: `host` or `host:port`, an IPv6 host in brackets."""
    name = f"[{host}]" if ":" in host else host
    return name if port is None else f"{name}:{port}"


def _nat64(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if any(address in prefix for prefix in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _is_local_name(host: str) -> bool:
    """A name no public DNS answers for us: the machine's own, a local network's, or a single label (which a
    resolver completes with its own search domains: `metadata`, `db`)."""
    return host in _LOCAL_NAMES or host.endswith(_LOCAL_SUFFIXES) or "." not in host


def _authority(url: str) -> str:
    """The text between `//` and the path: where credentials would be, whatever a parser makes of them."""
    rest = url.split("//", 1)[-1]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def _short(error: Exception) -> str:
    return " ".join(str(error).split())[:120] or type(error).__name__
