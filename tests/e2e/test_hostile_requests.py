"""The API as an attacker meets it: raw bytes on a socket to the real served API (uvicorn on a loopback port,
the session's broker and database behind it). Every request ends in a 4xx or 2xx with a JSON
{code, message}, never a 500, and no request holds a connection longer than the bounds say."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.guards import SECURITY_HEADERS
from shared.settings import Settings

from ..conftest import API_TOKEN
from .conftest import served_api

# Bounds small enough for a test to wait them out; the defaults are in shared/settings.py.
HEAD_S, STALL_S, BODY_S = 1.5, 1.0, 3.0
MARGIN_S = 2.0  # a loaded 2-core machine: how late an answer may be and still be "within the bound"
AUTH = f"Authorization: Bearer {API_TOKEN}\r\n".encode()


@pytest.fixture(scope="module")
async def port(settings: Settings, engine, pipeline) -> AsyncIterator[int]:
    """The API served the way `clients-import serve` serves it, with short time bounds."""
    strict = settings.model_copy(update={"api_head_timeout_s": HEAD_S, "api_body_stall_s": STALL_S,
                                         "api_body_timeout_s": BODY_S})
    async with served_api(strict, engine) as number:
        yield number


@dataclass
class Answer:
    status: int | None  # None: the server closed without answering
    body: bytes
    closed: bool  # the server closed the connection after answering
    seconds: float
    headers: dict[str, str]

    def json(self) -> dict:
        return json.loads(self.body)

    def assert_refused(self, status: int, code: str) -> dict:
        assert (self.status, self.json().get("code")) == (status, code), (self.status, self.body[:300])
        assert isinstance(self.json()["message"], str) and self.json()["message"]
        # Every answer carries the security headers, what the server writes before parsing a request included.
        assert {k.lower(): v for k, v in SECURITY_HEADERS.items()}.items() <= self.headers.items(), self.headers
        return self.json()


async def exchange(port: int, *pieces: bytes, pause: float = 0.0, wait: float = 15.0, watch: bool = True) -> Answer:
    """Send the pieces (pausing between them), then read one response and (watch) whether the server then
    closes the connection within the head bound plus the margin."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    parser = _response_parser()

    async def send() -> None:
        try:
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                if pause:
                    await asyncio.sleep(pause)
        except (ConnectionError, OSError):  # the server answered and closed before we finished: fine
            pass

    sender = asyncio.create_task(send())
    try:
        status, body, closed, headers = await asyncio.wait_for(_read_answer(reader, parser, watch), wait)
    finally:
        sender.cancel()
        writer.close()
    return Answer(status, body, closed, time.monotonic() - started, headers)


def _response_parser() -> h11.Connection:
    # h11 as the client parses what the server sends; the request it thinks we sent is never written.
    parser = h11.Connection(h11.CLIENT)
    parser.send(h11.Request(method="POST", target="/", headers=[("Host", "x"), ("Content-Length", "0")]))
    parser.send(h11.EndOfMessage())
    return parser


async def _read_answer(reader: asyncio.StreamReader, parser: h11.Connection, watch: bool) -> tuple[int | None, bytes, bool, dict]:
    status, body, headers = None, b"", {}
    while True:
        try:
            event = parser.next_event()
        except h11.RemoteProtocolError:  # closed before (or in the middle of) an answer
            return status, body, True, headers
        if event is h11.NEED_DATA:
            try:
                parser.receive_data(await reader.read(65536))
            except ConnectionResetError:
                parser.receive_data(b"")
            continue
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {name.decode().lower(): value.decode() for name, value in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.ConnectionClosed):
            return status, body, True, headers
        elif isinstance(event, h11.EndOfMessage):
            return status, body, watch and await _closes(reader), headers


async def _closes(reader: asyncio.StreamReader, within: float = HEAD_S + MARGIN_S) -> bool:
    try:
        return await asyncio.wait_for(reader.read(1), within) == b""
    except ConnectionResetError:  # closed with our unread bytes still in its buffer: a reset, not a FIN
        return True
    except TimeoutError:
        return False


def post(body: bytes, boundary: bytes = b"b", headers: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return (b"POST /imports HTTP/1.1\r\nHost: api\r\n" + AUTH
            + b"Content-Type: multipart/form-data; boundary=" + boundary + b"\r\n"
            + b"Content-Length: %d\r\n" % size + headers + b"\r\n" + body)


def form(data: bytes = b"firstName,email\nAnn,ann@example.com\n", name: bytes = b"clients.csv") -> bytes:
    return (b'--b\r\nContent-Disposition: form-data; name="file"; filename="' + name + b'"\r\n'
            b"Content-Type: text/csv\r\n\r\n" + data + b"\r\n--b--\r\n")


# Time: a body or a head that never ends is answered and the connection closed, within the bounds.

async def test_stalled_uploads_are_answered_408_and_closed_within_the_stall_bound(port):
    def stalled(i: int) -> bytes:
        return post(form()[:60], length=10_000, headers=b"Idempotency-Key: stall-%d\r\n" % i)

    answers = await asyncio.gather(*(exchange(port, stalled(i)) for i in range(100)))
    for answer in answers:
        answer.assert_refused(408, "body_timeout")
        assert answer.closed and answer.seconds < STALL_S + MARGIN_S


async def test_an_upload_trickled_under_the_stall_bound_is_cut_at_the_whole_body_bound(port):
    body = form(b"x" * 200)
    trickle = [post(b"", length=len(body)), *(body[i:i + 1] for i in range(len(body)))]
    answer = await exchange(port, *trickle, pause=STALL_S / 3)
    answer.assert_refused(408, "body_timeout")
    assert answer.closed and BODY_S <= answer.seconds < BODY_S + MARGIN_S


async def test_a_head_that_never_ends_and_a_silent_connection_are_closed_within_the_head_bound(port):
    slow_head = await exchange(port, b"POST /imports HTTP/1.1\r\nHost: api\r\nX-Slow: ")
    silent = await exchange(port)
    slow_head.assert_refused(408, "head_timeout")
    assert slow_head.closed and slow_head.seconds < HEAD_S + MARGIN_S
    assert silent.status is None and silent.closed and silent.seconds < HEAD_S + MARGIN_S


async def test_a_body_a_route_does_not_read_does_not_hold_the_connection(port):
    answer = await exchange(port, b"GET /healthz HTTP/1.1\r\nHost: api\r\nContent-Length: 1000\r\n\r\nab")
    assert answer.status == 200 and answer.closed and answer.seconds < HEAD_S + MARGIN_S


async def test_a_chunked_body_of_tiny_pieces_a_route_does_not_read_ends_the_connection_at_once(port):
    # 1-byte chunks: each costs the parser as much as a big one. Answered, or refused before, then closed at
    # once (well before the head bound that ends a drain).
    head = b"GET /healthz HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n"
    many = await exchange(port, head, b"1\r\nX\r\n" * 20_000)
    assert many.closed and many.seconds < HEAD_S
    assert many.status == 200 or many.assert_refused(400, "body_too_fragmented")


async def test_an_upload_in_one_byte_chunks_is_refused_and_closed(port):
    body = form()
    head = (b"POST /imports HTTP/1.1\r\nHost: api\r\n" + AUTH + b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    pieces = [b"1\r\n%s\r\n" % body[i:i + 1] for i in range(len(body))] * 40  # ~2,800 pieces of 1 byte
    answer = await exchange(port, head, b"".join(pieces))
    refusal = answer.assert_refused(400, "body_too_fragmented")
    assert "pieces of 16 bytes or more" in refusal["message"] and answer.closed


async def test_an_upload_streamed_one_csv_line_a_chunk_is_taken(port):
    """What a partner's streaming client sends (requests with a generator, httpx `content=`): not an attack."""
    lines = [b"firstName,email\n", *(b"Stream%d,stream%d@example.com\n" % (i, i) for i in range(2000))]
    parts = [b'--b\r\nContent-Disposition: form-data; name="file"; filename="s.csv"\r\nContent-Type: text/csv\r\n\r\n',
             *lines, b"\r\n--b--\r\n"]
    head = (b"POST /imports HTTP/1.1\r\nHost: api\r\n" + AUTH + b"Content-Type: multipart/form-data; boundary=b\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    answer = await exchange(port, head, b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n",
                            watch=False)
    assert answer.status == 202, answer.body[:300]


async def test_a_body_refused_early_is_drained_so_the_client_reads_the_answer(port):
    """A partner's too-big upload: the answer comes before the body ends, and the client, still sending,
    gets it (not a connection reset), then the connection ends within the head bound."""
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\n'
    rest = b"a" * (4 * 1024 * 1024)
    answer = await exchange(port, post(head + b"a" * 70_000, headers=b"X-Requested-By: a\tb\r\n",
                                       length=len(head) + 70_000 + len(rest)), rest)
    answer.assert_refused(422, "invalid_requested_by")
    assert answer.closed


# Bytes: exact lengths, one well-formed form, every bounded field said with its bound.

async def test_a_content_length_smaller_than_the_body_is_not_taken_as_a_file(port):
    body = form(b"firstName,email\nAnn,ann@example.com\nBob,bob@example.com\n")
    (await exchange(port, post(body, length=len(body) - 30))).assert_refused(400, "incomplete_multipart")


async def test_a_content_length_with_chunked_encoding_is_refused_and_the_connection_closed(port):
    body = form()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    answer = await exchange(port, post(chunked, length=len(body), headers=b"Transfer-Encoding: chunked\r\n"))
    answer.assert_refused(400, "ambiguous_length")
    assert answer.closed


@pytest.mark.parametrize(("request_bytes", "status", "code"), [
    pytest.param(post(form().replace(b"--b", b"--x")), 400, "malformed_multipart", id="another boundary"),
    pytest.param(post(b"\x00\x01garbage\xff" * 50), 400, "malformed_multipart", id="garbage body"),
    pytest.param(post(form().replace(b"Content-Disposition:", b"Content-Disposition")), 400, "malformed_multipart",
                 id="part header without a colon"),
    pytest.param(post(form().replace(b"form-data;", b"form-data;\r")), 400, "malformed_multipart", id="bare CR"),
    pytest.param(post(form(name=b"a" * 10_000 + b".csv")), 422, "file_name_too_long", id="10,000-character file name"),
    pytest.param(post(form(), headers=b"Idempotency-Key: " + b"k" * 201 + b"\r\n"), 422, "idempotency_key_too_long",
                 id="Idempotency-Key over 200 characters"),
    pytest.param(post(form(), headers=b"Idempotency-Key: a\tb\r\n"), 422, "invalid_idempotency_key",
                 id="Idempotency-Key with a tab"),
    pytest.param(post(form().replace(b"--b--", b'--b\r\nContent-Disposition: form-data; name="file"; '
                                            b'filename="two.csv"\r\n\r\nBob,bob@example.com\r\n--b--')),
                 400, "more_than_one_file", id="two file parts"),
    pytest.param(post(form(), headers=b"X-Requested-By: a\tb\r\n"), 422, "invalid_requested_by",
                 id="X-Requested-By with a tab"),
])
async def test_a_malformed_upload_is_refused_with_a_code(port, request_bytes, status, code):
    (await exchange(port, request_bytes)).assert_refused(status, code)


async def test_a_ten_megabyte_part_header_is_refused_early(port):
    head = b'--b\r\nContent-Disposition: form-data; name="file"; filename="'
    pieces = [post(head, length=len(head) + 10 * 1024 * 1024), *[b"a" * 65536] * 160]
    answer = await exchange(port, *pieces)
    answer.assert_refused(400, "part_header_too_large")
    assert answer.closed


async def test_a_file_name_limit_and_key_limit_are_said_in_the_message(port):
    name = (await exchange(port, post(form(name=b"a" * 10_000 + b".csv")))).json()["message"]
    key = (await exchange(port, post(form(), headers=b"Idempotency-Key: " + b"k" * 201 + b"\r\n"))).json()["message"]
    assert "255" in name and "200" in key


async def test_a_head_over_the_size_bound_is_refused_431_whole_or_in_pieces(port, settings):
    big = b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Big: " + b"a" * settings.api_max_head_bytes
    whole = await exchange(port, big + b"\r\n\r\n")  # arrives in one read: measured once parsed
    pieces = await exchange(port, big, b"\r\n\r\n", pause=0.3)  # still arriving: h11's own bound
    for answer in (whole, pieces):
        answer.assert_refused(431, "head_too_large")
        assert answer.closed


async def test_bytes_that_are_not_http_are_refused_400_in_json(port):
    (await exchange(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n")).assert_refused(
        400, "bad_request")


async def test_a_json_body_over_its_bound_is_refused_413(port, settings):
    body = b'{"token": "' + b"a" * settings.api_max_body_bytes + b'"}'
    answer = await exchange(port, b"POST /session HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n" % len(body) + body)
    assert f"{settings.api_max_body_bytes:,}" in answer.assert_refused(413, "body_too_large")["message"]


async def test_a_chunked_json_body_over_its_bound_is_refused_413_not_a_parse_error(port, settings):
    body = b'{"token": "' + b"a" * settings.api_max_body_bytes + b'"}'
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 8192]), body[i:i + 8192]) for i in range(0, len(body), 8192))
    answer = await exchange(port, b"POST /session HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
    answer.assert_refused(413, "body_too_large")


async def test_a_well_formed_upload_is_still_taken(port):
    answer = await exchange(port, post(form(b"firstName,email\nUp,up@hostile.example.com\n")))
    assert answer.status == 202 and answer.json()["status"] == "received"


async def test_a_connection_past_the_bound_is_answered_503_and_the_next_one_after_a_close_is_served(settings, engine):
    capped = settings.model_copy(update={"api_max_connections": 3})
    healthz = b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n"
    async with served_api(capped, engine) as number:
        held = [await asyncio.open_connection("127.0.0.1", number) for _ in range(3)]
        await asyncio.sleep(0.2)  # the server has taken them
        over = await exchange(number, healthz)
        held.pop()[1].close()
        await asyncio.sleep(0.2)
        after = await exchange(number, healthz)
        for _, writer in held:
            writer.close()

    over.assert_refused(503, "too_many_connections")
    assert over.closed and over.headers.get("retry-after") == "1"
    assert after.status == 200


# Hypothesis: any headers and body on POST /imports, and any path and query on the reads.

_token = st.text(alphabet="abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=1, max_size=20)
_value = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_part_piece = st.sampled_from([
    b"--b", b"--b--", b"\r\n", b"\r", b"Content-Disposition: form-data", b'; name="file"', b'; name="mode"',
    b'; name="dry_run"', b'; name="callback_url"', b'; filename="c.csv"', b'; filename="', b":", b'"',
    b"firstName,email\nA,a@h.example.com\n", b"\x00", b"https://x.example/", b"a" * 500,
])
_body = st.one_of(
    st.lists(st.one_of(_part_piece, st.binary(max_size=40)), max_size=25).map(b"".join),
    st.binary(max_size=3000),
    st.builds(form, st.binary(max_size=300), st.binary(max_size=300).map(lambda b: b.replace(b'"', b""))),
)
_content_type = st.one_of(
    st.just(b"multipart/form-data; boundary=b"), _value,
    st.builds(b"multipart/form-data; boundary=%s".__mod__, _value),
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=_body,
    content_type=_content_type,
    extra=st.lists(st.tuples(_token, _value), max_size=4),
    key=st.one_of(st.none(), _value),
    length_shift=st.sampled_from([0, 0, 0, -1, -7, None]),
)
async def test_any_upload_request_is_answered_with_a_code_never_500(port, body, content_type, extra, key, length_shift):
    headers = b"".join(b"%s: %s\r\n" % (name.encode(), value) for name, value in extra)
    headers += b"Idempotency-Key: %s\r\n" % key if key is not None else b""
    length = b"Transfer-Encoding: chunked\r\n" if length_shift is None else b"Content-Length: %d\r\n" % max(
        0, len(body) + length_shift)
    sent = body if length_shift is not None else b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n"
    raw = (b"POST /imports HTTP/1.1\r\nHost: api\r\n" + AUTH + b"Content-Type: " + content_type + b"\r\n"
           + headers + length + b"\r\n" + sent)
    answer = await exchange(port, raw, wait=BODY_S + HEAD_S + MARGIN_S, watch=False)
    _assert_clear(answer)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(["/imports/", "/imports/%s/errors.csv", "/imports/%s/results.csv", "/session", "/settings"]),
       job=st.binary(max_size=300), query=st.binary(max_size=300))
async def test_any_path_to_the_reads_is_answered_with_a_code_never_500(port, path, job, query):
    quoted = "".join(f"%{b:02X}" for b in job).encode()
    target = (path.encode() + quoted if "%s" not in path else path.encode() % quoted) + b"?" + _printable(query)
    answer = await exchange(port, b"GET " + target + b" HTTP/1.1\r\nHost: api\r\n" + AUTH + b"\r\n",
                            wait=HEAD_S + MARGIN_S, watch=False)
    _assert_clear(answer, reports_ok=True)


def _printable(raw: bytes) -> bytes:
    return bytes(b for b in raw if 0x21 <= b < 0x7f and b != ord("#"))


def _assert_clear(answer: Answer, reports_ok: bool = False) -> None:
    assert answer.status is not None and answer.status < 500, (answer.status, answer.body[:300])
    assert answer.seconds < BODY_S + HEAD_S + MARGIN_S
    if 300 <= answer.status < 400:
        return  # /imports/ redirected to /imports, say
    if reports_ok and answer.status == 200 and not answer.body.startswith(b"{"):
        return  # a CSV report
    document = answer.json()
    if answer.status >= 400:
        assert set(document) == {"code", "message"}, document
