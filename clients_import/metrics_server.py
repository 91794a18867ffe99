"""Each service process's small HTTP server for operators: /metrics, /healthz and /readyz.

A tiny HTTP/1.1 server on the process's own event loop (`asyncio.start_server`), not prometheus_client's
WSGI app on a thread: /readyz must run the pipeline's own async checks (the database and the broker, on
this loop's engine and broker), which a thread could only reach by hopping back onto the loop; and no
thread means nothing to join at shutdown. It serves three GETs, one request per connection, and every
part of it is bounded: the request head (8 KiB, read within 5 s), the connections served at once (16),
and the readiness check (6 s). /healthz answers as long as the event loop does.

`serve` with several services in one process has one server, one port and one registry
(`shared.metrics.REGISTRY`): every series carries its `stage` label (or its consumer `group`).
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from shared.metrics import REGISTRY

__all__ = ["MetricsServer"]

log = logging.getLogger("clients_import.metrics")

HEAD_LIMIT = 8 * 1024  # bytes of a request line and its headers
READ_TIMEOUT_S = 5.0
READY_TIMEOUT_S = 6.0
MAX_CONNECTIONS = 16

Readiness = Callable[[], Awaitable[str | None]]  # None when ready, else the reason it is not


class MetricsServer:
    """`await start()` binds (port 0: a free one) and returns the port; `await stop()` closes it."""

    def __init__(self, readiness: Readiness, host: str = "127.0.0.1", port: int = 0,
                 registry: CollectorRegistry = REGISTRY) -> None:
        self.readiness, self.host, self.port, self.registry = readiness, host, port, registry
        self._server: asyncio.Server | None = None
        self._slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=HEAD_LIMIT)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._slots.locked():
                await _respond(writer, "GET", 503, _json({"error": "busy"}), "application/json")
                return
            async with self._slots:
                try:
                    async with asyncio.timeout(READ_TIMEOUT_S):
                        head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
                    return  # nothing sensible to answer: drop the connection
                method, path, headers = _parse(head)
                status, body, content_type = await self._route(method, path, headers)
                await _respond(writer, method, status, body, content_type)
        except Exception:  # a broken client never reaches the pipeline
            log.debug("metrics request failed", exc_info=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1):
                    await writer.wait_closed()

    async def _route(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, bytes, str]:
        if not method:
            return 400, _json({"error": "bad request"}), "application/json"
        if path not in ("/metrics", "/healthz", "/readyz"):
            return 404, _json({"error": "not found", "paths": ["/metrics", "/healthz", "/readyz"]}), "application/json"
        if method not in ("GET", "HEAD"):
            return 405, _json({"error": "method not allowed"}), "application/json"
        if path == "/metrics":
            encode, content_type = choose_encoder(headers.get("accept", ""))
            return 200, encode(self.registry), content_type
        if path == "/healthz":
            return 200, _json({"alive": True}), "application/json"
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                reason = await self.readiness()
        except TimeoutError:
            reason = f"the readiness check took longer than {READY_TIMEOUT_S:.0f} s"
        except Exception as error:
            reason = f"the readiness check failed ({type(error).__name__})"
        if reason is None:
            return 200, _json({"ready": True}), "application/json"
        return 503, _json({"ready": False, "reason": reason}), "application/json"


def _parse(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, path without its query, lower-cased headers); an empty method for a request we cannot read."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "", "", {}
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return parts[0].upper(), parts[1].split("?", 1)[0], headers


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}


async def _respond(writer: asyncio.StreamWriter, method: str, status: int, body: bytes, content_type: str) -> None:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Cache-Control: no-store\r\nConnection: close\r\n"
        + ("Allow: GET, HEAD\r\n" if status == 405 else "")
        + "\r\n"
    ).encode()
    writer.write(head if method == "HEAD" else head + body)
    async with asyncio.timeout(READ_TIMEOUT_S):
        await writer.drain()


def _json(value: dict) -> bytes:
    return json.dumps(value).encode()
