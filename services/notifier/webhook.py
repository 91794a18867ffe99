"""Posting a job's notification to the requester's callback URL, signed: one attempt, its back-off, the words
of its outcome. The outbox (`outbox.py`) keeps the deliveries and counts their attempts.

An attempt checks the URL again (shared/callbacks.py: the rule may have changed since the request was
taken), resolves its host once, refuses it unless every address is public (or the destination is allowed
by name), and connects to the address it checked: the URL's host is replaced by that address, the `Host`
header and the TLS server name (SNI, and so the certificate checked) keep the name. A name that resolves
to a public address for the check and to a private one a moment later (DNS rebinding) is never looked up
a second time. No redirect is followed, no proxy from the environment is used, no connection is reused
(a pooled connection is known by its address, not by the name it was verified for), and the answer's
body is never read: the job learns only the class of what happened (`Answer.outcome`).
"""

import asyncio
import hashlib
import hmac
import ipaddress
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from shared.callbacks import CallbackPolicy, CallbackRefused, Destination, check_url, is_public

__all__ = ["DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMED_SIGNATURE_HEADER", "Answer", "Resolver", "Sender",
           "backoff", "delivered", "failed", "not_sent", "signature", "timed_signature"]

SIGNATURE_HEADER = "X-Clients-Import-Signature"  # sha256=<HMAC of the body>: kept as it was, it does not resist replay
TIMED_SIGNATURE_HEADER = "X-Clients-Import-Webhook-Signature"  # t=<unix seconds>,v1=<HMAC of "t.delivery_id.body">
DELIVERY_HEADER = "X-Clients-Import-Delivery"  # the delivery's id: the same on every attempt of one delivery
MAX_BACKOFF_S = 3600.0  # however many attempts are allowed, one wait is at most an hour
REFUSED_ADDRESS = "refused address"

# The addresses a host name resolves to, for a TCP connection on `port`: passed in by tests.
Resolver = Callable[[str, int], Awaitable[list[str]]]


def signature(secret: str, body: bytes) -> str:
    """HMAC-SHA256 of the exact body, as `sha256=<hex>` (the first version's header, kept for receivers that
    check it: anyone who saw one delivery can send it again, so receivers should check the timed one)."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def timed_signature(secret: str, timestamp: int, delivery_id: str, body: bytes) -> str:
    """`t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<delivery_id>.<body>">`: the receiver recomputes it,
    refuses a timestamp older than its tolerance and a delivery id it has already taken."""
    signed = f"{timestamp}.{delivery_id}.".encode() + body
    return f"t={timestamp},v1={hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()}"


def backoff(attempt: int, first: float) -> float:
    """The wait after failed attempt number `attempt`: `first`, doubling each time, at most an hour."""
    return min(MAX_BACKOFF_S, first * 2.0 ** min(max(attempt - 1, 0), 40))


@dataclass(frozen=True)
class Answer:
    """How one attempt went. `outcome` is all the job says: a class (`2xx`, `5xx`, `timeout`, `connection
    failed`, `refused address`...), never what the receiver answered, so a callback URL cannot be used to
    read what some host says. `detail` (the status code, the error) goes to the notifier's log only."""

    taken: bool
    outcome: str
    detail: str
    final: bool = False  # the URL itself is refused: no later attempt can do better


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


class Sender:
    """Signs and posts deliveries, each to the address it checked."""

    def __init__(self, secret: str, policy: CallbackPolicy, timeout_s: float, *, client: httpx.AsyncClient | None = None,
                 resolver: Resolver = system_resolver, clock: Callable[[], float] = time.time) -> None:
        self.secret, self.policy, self.timeout_s = secret, policy, timeout_s
        self.resolver, self.clock = resolver, clock
        self.client = client or httpx.AsyncClient(
            timeout=timeout_s, follow_redirects=False, trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    @classmethod
    def of(cls, settings) -> "Sender":
        return cls(settings.webhook_secret or "", CallbackPolicy.of(settings), settings.webhook_timeout_s)

    async def send(self, url: str, delivery_id: str, body: bytes) -> Answer:
        """One signed POST, bounded by the time-out in all (resolving included)."""
        try:
            destination = check_url(url, self.policy)
        except CallbackRefused as refused:
            return Answer(False, f"refused URL: {refused}", "the URL's text is refused", final=True)
        try:
            async with asyncio.timeout(self.timeout_s):
                address = await self._checked_address(destination)
                if isinstance(address, Answer):
                    return address
                async with self.client.stream(
                    "POST", str(destination.url.copy_with(host=address, fragment=None)), content=body, follow_redirects=False,
                    headers=self._headers(destination, delivery_id, body),
                    extensions={"sni_hostname": destination.host} if _is_name(destination.host) else {},
                ) as response:
                    status = response.status_code
        except (TimeoutError, httpx.TimeoutException) as error:
            return Answer(False, "timeout", type(error).__name__)
        except Exception as error:  # refused, reset, TLS (a certificate not for the name), whatever else: failed
            return Answer(False, "connection failed", f"{type(error).__name__}: {error}"[:300])
        return Answer(200 <= status < 300, _status_class(status), f"HTTP {status}")

    async def _checked_address(self, destination: Destination) -> str | Answer:
        """The address to connect to: the first the host resolves to, once every one is checked public (any
        for an allowed destination). The job is not told whether the name resolved at all."""
        try:
            found = [ipaddress.ip_address(a) for a in await self.resolver(destination.host, destination.port)]
        except (OSError, ValueError) as error:  # no such name, no answer, a resolver answering nonsense
            return Answer(False, REFUSED_ADDRESS, f"{destination.host} does not resolve: {error}"[:300])
        if not found:
            return Answer(False, REFUSED_ADDRESS, f"{destination.host} resolves to nothing")
        if not destination.allowed and not all(is_public(a) for a in found):
            return Answer(False, REFUSED_ADDRESS, f"{destination.host} resolves to {', '.join(map(str, found))[:200]}")
        return str(found[0])

    def _headers(self, destination: Destination, delivery_id: str, body: bytes) -> dict[str, str]:
        return {
            "Host": destination.url.netloc.decode("ascii"),  # the name (and port) the receiver is known by
            "Content-Type": "application/json",
            "User-Agent": "clients-import-webhook/1",
            SIGNATURE_HEADER: signature(self.secret, body),
            TIMED_SIGNATURE_HEADER: timed_signature(self.secret, int(self.clock()), delivery_id, body),
            DELIVERY_HEADER: delivery_id,
        }

    async def aclose(self) -> None:
        await self.client.aclose()


def _is_name(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return True
    return False


def _status_class(status: int) -> str:
    if 300 <= status < 400:
        return f"{status // 100}xx (redirects are not followed)"
    return f"{status // 100}xx"


def delivered(attempt_number: int) -> str:
    return f"delivered on attempt {attempt_number}"


def failed(attempts: int, problem: str) -> str:
    return f"failed after {attempts} attempts (last: {problem})"


def not_sent(problem: str) -> str:
    return f"not sent: {problem}"
