"""One webhook attempt against real sockets: local targets are refused without a connection being made,
the address checked is the address connected to (DNS rebinding gets no second lookup), TLS still checks
the certificate for the name, redirects are not followed, and every call is signed so that a receiver
running the README's recipe (examples/verify_webhook.py) refuses a replay."""

import asyncio
import hashlib
import hmac
import ssl
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.datastructures import Headers

from clients_import.local_kafka import free_port
from services.notifier.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMED_SIGNATURE_HEADER, Sender, system_resolver
from shared.callbacks import CallbackPolicy

from ..webhook_recipe import verify_webhook

SECRET = "sender-test-secret"
BODY = b'{"job_id": "j-1", "status": "completed"}'
PUBLIC_ADDRESS = "93.184.216.34"


class Listener:
    """A bare TCP listener on 127.0.0.1 that counts the connections made to it."""

    def __init__(self) -> None:
        self.connections = 0

    async def __aenter__(self) -> "Listener":
        async def accepted(_reader, writer) -> None:
            self.connections += 1
            writer.close()

        self.server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc) -> None:
        self.server.close()
        await self.server.wait_closed()


def sender(policy: CallbackPolicy = CallbackPolicy(), **kwargs) -> Sender:
    return Sender(SECRET, policy, 2.0, **kwargs)


async def test_local_targets_are_refused_without_a_connection_in_every_notation():
    async with Listener() as listener:
        p = listener.port
        webhooks = sender(CallbackPolicy(allow_http=True))
        for url in (f"http://127.0.0.1:{p}/", f"http://2130706433:{p}/", f"http://0x7f.1:{p}/", f"http://127.1:{p}/",
                    f"http://017700000001:{p}/", f"http://[::ffff:127.0.0.1]:{p}/", f"http://[::ffff:7f00:1]:{p}/",
                    f"http://localhost:{p}/", f"http://LOCALHOST.:{p}/", f"http://a.localhost:{p}/"):
            answer = await webhooks.send(url, "d-1", BODY)
            assert (answer.taken, answer.final, answer.outcome.startswith("refused URL")) == (False, True, True), url

        async def to_loopback(host: str, port: int) -> list[str]:  # a public-looking name that resolves home
            return ["127.0.0.1"]

        answer = await sender(CallbackPolicy(allow_http=True), resolver=to_loopback).send(
            f"http://hooks.partner.example:{p}/", "d-1", BODY)
        assert (answer.taken, answer.outcome, answer.final) == (False, "refused address", False)
        assert listener.connections == 0

        # The same listener, allowed by name, is reached: the refusals above were not for want of a listener.
        allowed = await sender(CallbackPolicy(allow_http=True, allowed=frozenset({"127.0.0.1"}))).send(
            f"http://127.0.0.1:{p}/", "d-1", BODY)
        assert (allowed.taken, allowed.outcome) == (False, "connection failed")
        assert listener.connections == 1
        await webhooks.aclose()


async def test_the_system_resolver_answers_for_a_name_and_a_name_that_does_not_resolve_is_refused():
    assert "127.0.0.1" in await system_resolver("localhost", 80)
    answer = await sender().send("https://no-such-host.invalid/hook", "d-1", BODY)
    assert (answer.taken, answer.outcome, answer.final) == (False, "refused address", False)


async def test_the_address_checked_is_the_address_connected_to_and_the_name_is_asked_once():
    """DNS rebinding: the first answer is public, every later one is the metadata service's."""
    answers = iter([[PUBLIC_ADDRESS], ["169.254.169.254"], ["169.254.169.254"]])
    asked: list[str] = []
    seen: list[httpx.Request] = []

    async def rebinding(host: str, port: int) -> list[str]:
        asked.append(f"{host}:{port}")
        return next(answers)

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = httpx.AsyncClient(transport=httpx.MockTransport(receiver))
    answer = await sender(resolver=rebinding, client=client).send("https://Hooks.Partner.Example:8443/in?x=1#frag", "d-1", BODY)
    assert (answer.taken, answer.outcome, answer.detail) == (True, "2xx", "HTTP 204")
    assert asked == ["hooks.partner.example:8443"]
    [request] = seen
    assert str(request.url) == f"https://{PUBLIC_ADDRESS}:8443/in?x=1"
    assert request.headers["host"] == "hooks.partner.example:8443"
    assert request.extensions["sni_hostname"] == "hooks.partner.example"


async def test_a_name_with_one_local_address_among_public_ones_is_refused():
    async def mixed(host: str, port: int) -> list[str]:
        return [PUBLIC_ADDRESS, "2606:4700:4700::1111", "fd00::5"]

    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: pytest.fail("contacted")))
    answer = await sender(resolver=mixed, client=client).send("https://hooks.partner.example/", "d-1", BODY)
    assert (answer.taken, answer.outcome) == (False, "refused address")


# --- TLS: connecting to the address keeps the certificate checked for the name -------------------------


def make_certificates(directory: Path) -> tuple[Path, dict[str, tuple[Path, Path]]]:
    """A throw-away CA, and a server certificate signed by it for each of two names (openssl's CLI)."""
    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory, timeout=60)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=clients-import test CA")
    leaves = {}
    for name in ("hooks.partner.test", "other.test"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        (directory / f"{name}.ext").write_text(f"subjectAltName=DNS:{name}\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext")
        leaves[name] = (directory / f"{name}.pem", directory / f"{name}.key")
    return directory / "ca.pem", leaves


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Headers, bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((Headers(scope=scope), body))
        status = 302 if scope["path"] == "/moved" else 200
        await send({"type": "http.response.start", "status": status, "headers": [(b"location", b"http://127.0.0.1:1/")]})
        await send({"type": "http.response.body", "body": b"private answer"})


async def serve_tls(app, cert: tuple[Path, Path]) -> tuple[uvicorn.Server, asyncio.Task, int]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False,
                                           ssl_certfile=str(cert[0]), ssl_keyfile=str(cert[1])))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.05)
    return server, task, port


async def test_over_tls_the_certificate_is_checked_for_the_name_and_a_real_delivery_verifies_once(tmp_path):
    ca, leaves = make_certificates(tmp_path)
    recorder = Recorder()
    right, right_task, right_port = await serve_tls(recorder, leaves["hooks.partner.test"])
    wrong, wrong_task, wrong_port = await serve_tls(recorder, leaves["other.test"])

    async def home(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    trusted = ssl.create_default_context(cafile=str(ca))
    policy = CallbackPolicy(allowed=frozenset({"hooks.partner.test"}))  # a private receiver, allowed by name
    webhooks = Sender(SECRET, policy, 5.0, resolver=home, client=httpx.AsyncClient(
        verify=trusted, trust_env=False, limits=httpx.Limits(max_keepalive_connections=0)))
    delivery_id = str(uuid.uuid4())
    try:
        answer = await webhooks.send(f"https://hooks.partner.test:{right_port}/hook", delivery_id, BODY)
        assert (answer.taken, answer.outcome) == (True, "2xx")
        # The same address, serving a certificate for another name: refused by TLS.
        mismatch = await webhooks.send(f"https://hooks.partner.test:{wrong_port}/hook", delivery_id, BODY)
        assert (mismatch.taken, mismatch.outcome) == (False, "connection failed") and "CERTIFICATE" in mismatch.detail.upper()
        moved = await webhooks.send(f"https://hooks.partner.test:{right_port}/moved", str(uuid.uuid4()), BODY)
        assert (moved.taken, moved.outcome) == (False, "3xx (redirects are not followed)")
    finally:
        await webhooks.aclose()
        right.should_exit = wrong.should_exit = True
        await asyncio.gather(right_task, wrong_task)

    assert len(recorder.calls) == 2  # the delivery, the redirect (not followed); nothing on the wrong certificate
    headers, body = recorder.calls[0]
    assert (headers["host"], body) == (f"hooks.partner.test:{right_port}", BODY)
    assert headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(SECRET.encode(), BODY, hashlib.sha256).hexdigest()
    assert headers[DELIVERY_HEADER] == delivery_id

    # The receiver's side, the README's recipe run as written: taken once, a replay refused.
    seen: set = set()
    assert verify_webhook(SECRET, headers, body, seen) is True
    assert verify_webhook(SECRET, headers, body, seen) is False  # the same delivery again: a replay or a retry
    stamp = int(headers[TIMED_SIGNATURE_HEADER].split(",")[0].removeprefix("t="))
    with pytest.raises(ValueError, match="tolerance"):  # captured and sent again later, to a receiver that forgot it
        verify_webhook(SECRET, headers, body, set(), now=stamp + 301)
    with pytest.raises(ValueError, match="bad signature"):
        verify_webhook(SECRET, headers, body.replace(b"completed", b"failed"), set())
    forged = Headers(raw=[(k, v) for k, v in headers.raw if k != DELIVERY_HEADER.lower().encode()]
                     + [(DELIVERY_HEADER.lower().encode(), b"another-id")])
    with pytest.raises(ValueError, match="bad signature"):  # a new id to get past `seen`: the signature covers it
        verify_webhook(SECRET, forged, body, set())
