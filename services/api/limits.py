"""The API's front door: how long and how big one request may be, each bound enforced where it can be.

- The request line and headers (the head): at most `api_max_head_bytes` (h11's `max_incomplete_event_size`
  bounds a head still arriving; a head that arrives whole in one read is measured by `RequestLimits`;
  answered 431) and `api_head_timeout_s` to arrive, from the connection's start or the previous answer
  (a timer on uvicorn's h11 protocol: uvicorn has none; answered 408 and closed). A silent connection is
  closed at the same bound.
- The body: `api_body_stall_s` at most between two pieces and `api_body_timeout_s` in all (`RequestLimits`,
  an ASGI middleware: uvicorn has no body timeout; answered 408 and closed); `api_max_body_bytes` for
  every body but an upload's, whose reader bounds it (services/api/upload.py), with a backstop here.
- A body the app did not read to its end (an early refusal, or a route that takes no body) is read and
  thrown away after the answer, so the client reads the answer rather than a reset, but only until the
  head timer (armed at each answer) runs out: no one keeps a connection by trickling a body nobody waits for.
- The pieces of a body (chunks, or reads), read by the app or thrown away: after 1,024, they must average
  16 bytes (400 `body_too_fragmented`, or closed at once after an answer), since each costs the parser the
  same: a body in 1-byte chunks would cost a core at under 1 MB/s.
  A body that stalled or ran out of time is answered 408 and the connection closed at once.
- `Content-Length` together with `Transfer-Encoding` is refused (400): two framings of one body is how
  requests are smuggled past a proxy (RFC 9112 6.3).
- Connections: at most `api_max_connections` at once (uvicorn has no bound but its `limit_concurrency`,
  whose refusal is plain text); the next one gets its request answered 503 `too_many_connections` and closed.
- What is not HTTP at all is answered 400 in the same `{code, message}` shape as every other refusal.

Starlette's and FastAPI's own body limit (`max_body_size`) is not used: when Content-Length is over, it
replaces the route's answer with a plain-text 413, and every answer here is `{code, message}` JSON.
"""

import asyncio
import json
import logging
import sys

import h11
import uvicorn
from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from shared.settings import Settings

from .errors import ApiError
from .guards import SECURITY_HEADERS

log = logging.getLogger("clients_import.api")


def server_config(app: ASGIApp, settings: Settings, **overrides) -> uvicorn.Config:
    """How `clients-import serve` (and the tests) serve the API: uvicorn on h11, with the head's bounds."""
    options = {
        "host": settings.api_host, "port": settings.api_port, "log_config": None, "access_log": False,
        "http": guarded_protocol(settings.api_head_timeout_s, settings.api_max_head_bytes, settings.api_max_connections),
        "h11_max_incomplete_event_size": settings.api_max_head_bytes,
    }
    return uvicorn.Config(app, **{**options, **overrides})


# -- The body: an ASGI middleware -------------------------------------------------------------------------

class RequestLimits:
    """Bounds the head's bytes and the time and bytes of every request body, and closes a connection whose
    body was not read.

    `limits` maps (method, path) to the byte bound of a route that reads big bodies (the upload); every
    other body has `default_bytes`. A `*` in a path stands for one whole segment (`/imports/*/retry`)."""

    def __init__(self, app: ASGIApp, *, max_head_bytes: int, stall_s: float, whole_s: float, default_bytes: int,
                 limits: dict[tuple[str, str], int] | None = None) -> None:
        self.app, self.max_head_bytes, self.stall_s, self.whole_s = app, max_head_bytes, stall_s, whole_s
        self.default_bytes, self.limits = default_bytes, limits or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        route = _route_of(scope["method"], scope["path"], self.limits)
        max_bytes = self.limits.get(route, self.default_bytes)
        body = _Body(receive, stall_s=self.stall_s, whole_s=self.whole_s, max_bytes=max_bytes,
                     expected=_framing(headers))
        answer = _Answer(send, body)
        try:
            if _head_bytes(scope) > self.max_head_bytes:
                raise ApiError(431, "head_too_large", _head_too_large(self.max_head_bytes))
            if "content-length" in headers and "transfer-encoding" in headers:
                raise ApiError(400, "ambiguous_length", "Send either Content-Length or Transfer-Encoding, not both.")
            if body.expected is not None and body.expected > max_bytes and route not in self.limits:
                raise body.too_large()  # a route with a bound of its own says it in its own words; we count behind it
            await self.app(scope, body.receive, answer.send)
        except ApiError as error:  # from our receive, where the app did not turn it into an answer itself
            await answer.refuse(error)
        except ClientDisconnect:
            log.info("client left mid-body", extra={"step": "api.disconnect", "path": scope["path"]})


def _route_of(method: str, path: str, limits: dict[tuple[str, str], int]) -> tuple[str, str]:
    """The key of `limits` this request falls under: its own path, or a pattern whose `*` segments match it."""
    if (method, path) in limits:
        return method, path
    segments = path.split("/")
    for key_method, pattern in limits:
        parts = pattern.split("/")
        if key_method == method and "*" in parts and len(parts) == len(segments) and all(
                p == "*" and s != "" or p == s for p, s in zip(parts, segments, strict=True)):
            return key_method, pattern
    return method, path


def _head_bytes(scope: Scope) -> int:
    """The head's size as sent: the request line and each `name: value` line."""
    line = len(scope["method"]) + len(scope["raw_path"]) + len(scope["query_string"]) + 12
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


def _head_too_large(max_head_bytes: int) -> str:
    return f"The request line and headers are larger than {max_head_bytes:,} bytes, the limit."


def _framing(headers: Headers) -> int | None:
    """The body's announced length: 0 when the request has none, None when chunked (unknown)."""
    if "transfer-encoding" in headers:
        return None
    length = headers.get("content-length", "0")
    return int(length) if length.isdigit() else 0  # h11 has refused any other Content-Length already


class _Body:
    """The request's receive, timed (stall and whole-body bounds) and counted (byte bound)."""

    def __init__(self, receive: Receive, *, stall_s: float, whole_s: float, max_bytes: int, expected: int | None) -> None:
        self._receive, self.stall_s, self.whole_s, self.max_bytes = receive, stall_s, whole_s, max_bytes
        self.expected = expected
        self.done = expected == 0  # nothing to read
        self.refusal: ApiError | None = None  # why reading stopped, if it did
        self._received = 0
        self._deadline = asyncio.get_running_loop().time() + whole_s

    async def receive(self) -> Message:
        if self.done:  # after the body: the app listens for a disconnect, which may take any time
            return await self._receive()
        wait = min(self.stall_s, self._deadline - asyncio.get_running_loop().time())
        try:
            async with asyncio.timeout(max(wait, 0)):
                message = await self._receive()
        except TimeoutError:
            raise self._refuse(self.timeout()) from None
        if message["type"] == "http.request":
            self._received += len(message.get("body", b""))
            if self._received > self.max_bytes:
                raise self._refuse(self.too_large())
            self.done = not message.get("more_body", False)
        return message

    def _refuse(self, error: ApiError) -> ApiError:
        self.refusal = error
        return error

    def timeout(self) -> ApiError:
        return ApiError(408, "body_timeout",
                        f"The request body did not arrive in time: at most {self.stall_s:g} s between two pieces "
                        f"and {self.whole_s:g} s in all.")

    def too_large(self) -> ApiError:
        return ApiError(413, "body_too_large", f"The request body is larger than {self.max_bytes:,} bytes, the limit.")


class _Answer:
    """The request's send: once reading the body was refused (timed out, too large), the answer is that
    refusal whatever the app made of the error (FastAPI turns a failed body read into a 400 of its own)."""

    def __init__(self, send: Send, body: _Body) -> None:
        self._send, self.body = send, body
        self.started = self.replaced = False

    async def send(self, message: Message) -> None:
        if self.replaced:
            return
        if message["type"] == "http.response.start":
            if self.body.refusal is not None:
                await self.refuse(self.body.refusal)
                self.replaced = True
                return
            self.started = True
        await self._send(message)

    async def refuse(self, error: ApiError) -> None:
        if self.started:  # the answer is under way: all that is left is to end the connection
            raise error
        body = json.dumps({"code": error.code, "message": error.message}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if error.status == 408 or error.code == "ambiguous_length":  # a stalled client; a framing not to trust
            headers.append((b"connection", b"close"))
        self.started = True
        await self._send({"type": "http.response.start", "status": error.status, "headers": headers})
        await self._send({"type": "http.response.body", "body": body})


# -- The head: uvicorn's h11 protocol with a timer ---------------------------------------------------------

def guarded_protocol(head_timeout_s: float, max_head_bytes: int, max_connections: int = 1000) -> type[H11Protocol]:
    """uvicorn's h11 protocol (uvicorn is pinned: this leans on its H11Protocol's hooks) bound to our settings."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"head_timeout_s": head_timeout_s,
                                                              "max_head_bytes": max_head_bytes,
                                                              "max_connections": max_connections})


# Each piece of a body (a chunk, or what one read brings) costs h11 and uvicorn about 7 µs whatever its
# size: a body in 1-byte chunks costs a core at under 1 MB/s. After PIECES_FREE pieces, a request's body
# must average PIECE_MIN_BYTES a piece: clients send kilobytes, a slow link's packets are over 500 bytes,
# and a client streaming a CSV one line per chunk sends 25 bytes or more (a line holds a name and an email).
PIECES_FREE, PIECE_MIN_BYTES = 1024, 16


class _Fragmented(h11.RemoteProtocolError):
    pass


class GuardedH11Protocol(H11Protocol):
    """Closes a connection whose next request head does not arrive within `head_timeout_s` (uvicorn's
    keep-alive timer stops at the first byte, so a head sent a byte at a time would hold it forever),
    refuses a body sent in pieces too small for what they cost, and answers what h11 cannot parse in
    our JSON shape rather than uvicorn's plain text."""

    head_timeout_s = 10.0
    max_head_bytes = 16 * 1024
    max_connections = 1000
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:  # this one included
            # Answered once its request has come (an answer before it could be lost to a reset), then closed.
            self.app = _too_many_connections(self.max_connections)
        self._count_pieces()
        self._await_head()

    def _count_pieces(self) -> None:
        """Every event h11 parses passes here (uvicorn has no hook): the pieces of each request's body are
        counted, and too many too small ones end the connection as a protocol error would."""
        next_event, counted = self.conn.next_event, [0, 0]  # pieces, bytes: of the current request

        def next_counted():
            event = next_event()
            if type(event) is h11.Data:
                counted[0] += 1
                counted[1] += len(event.data)
                if counted[0] > PIECES_FREE and counted[1] < counted[0] * PIECE_MIN_BYTES:
                    raise _Fragmented(f"{counted[0]:,} pieces of {counted[1] // counted[0]} bytes on average")
            elif type(event) is h11.Request:
                counted[:] = [0, 0]
            return event

        self.conn.next_event = next_counted

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        super().data_received(data)
        if self.cycle is not cycle or self.transport.get_protocol() is not self:  # a head arrived (or an upgrade)
            self._stop_waiting()

    def on_response_complete(self) -> None:
        cycle = self.cycle
        super().on_response_complete()
        if self.cycle is cycle and not self.transport.is_closing():  # kept alive, and no pipelined head in hand
            self._await_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        error = sys.exc_info()[1]  # uvicorn calls this while handling h11's error (or ours)
        if isinstance(error, _Fragmented):
            refusal = ApiError(400, "body_too_fragmented", f"The request body came in {error}; send it in pieces of "
                                                            f"{PIECE_MIN_BYTES} bytes or more.")
        elif len(self.conn.trailing_data[0]) > self.max_head_bytes:
            refusal = ApiError(431, "head_too_large", _head_too_large(self.max_head_bytes))
        else:
            refusal = ApiError(400, "bad_request", "This is not a well-formed HTTP/1.1 request.")
        self._stop_waiting()
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):  # not in the middle of, or after, an answer
            self.transport.write(_raw_answer(refusal))
        self.transport.close()

    def _await_head(self) -> None:
        self._stop_waiting()
        self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_too_slow)

    def _stop_waiting(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.conn.trailing_data[0]:  # part of a head came: say why the connection ends
            self.transport.write(_raw_answer(ApiError(
                408, "head_timeout", f"The request line and headers did not arrive within {self.head_timeout_s:g} s.")))
        self.transport.close()


def _too_many_connections(bound: int) -> ASGIApp:
    refusal = ApiError(503, "too_many_connections",
                       f"The server holds {bound:,} connections, its limit: try again in a moment.")
    body = json.dumps({"code": refusal.code, "message": refusal.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", b"1"), (b"connection", b"close"),
               *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return answer


def _raw_answer(error: ApiError) -> bytes:
    """An answer written straight to the socket: h11 sends none before it has parsed a request."""
    body = json.dumps({"code": error.code, "message": error.message}).encode()
    reason = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}[error.status]
    security = b"".join(b"%s: %s\r\n" % (k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%sconnection: close\r\n\r\n"
            % (error.status, reason, len(body), security) + body)

