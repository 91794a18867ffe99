"""The whole pipeline on the session's real broker and database, and a partner's client to drive it."""

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from clients_import.client import ImportClient
from clients_import.pipeline import Pipeline
from shared import jobs, topics
from shared.events import ImportNotification, ImportOptions, ImportRequest, Source
from shared.settings import Settings
from shared.tables import clients

from .tls import Certificates


@pytest.fixture(scope="session")
async def pipeline(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Pipeline]:
    async with Pipeline(settings, engine=engine) as running:
        yield running


@pytest.fixture
async def partner(settings: Settings, pipeline: Pipeline) -> AsyncIterator["Partner"]:
    async with ImportClient(settings) as client:
        yield Partner(client, settings.signing_key)


@pytest.fixture(scope="session")
async def memory_pipeline(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:
    """The same topology on the in-memory runner, with a database of its own."""
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('memory-db') / 'clients.db'}"
    async with Pipeline(settings.model_copy(update={"database_url": url}), in_memory=True) as running:
        yield running
    await running.engine.dispose()


@pytest.fixture
def memory_partner(memory_pipeline: Pipeline) -> "Partner":
    return Partner(MemoryClient(memory_pipeline), memory_pipeline.settings.signing_key)


class MemoryClient:
    """ImportClient's two calls, on the in-memory broker: a publication is consumed at once."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def submit(self, request: ImportRequest) -> None:
        await self.pipeline.broker.publish(request.model_dump_json().encode(), topics.REQUESTS,
                                           key=(request.job_id or "").encode() or None)

    async def wait(self, job_ids, timeout: float = 60) -> dict[str, ImportNotification]:
        notes = {n.job_id: n for n in map(ImportNotification.model_validate_json,
                                          (r.value for r in self.pipeline.seen[topics.NOTIFICATIONS]))}
        missing = set(job_ids) - notes.keys()
        assert not missing, f"no notification in memory for {missing}"
        return {job_id: notes[job_id] for job_id in job_ids}


class Partner:
    """Submits files the way our CLI does, on clients.import.requests, and waits for the answer."""

    def __init__(self, client: ImportClient | MemoryClient, signing_key: str) -> None:
        self.client, self.signing_key = client, signing_key

    def request(self, data: bytes | str, file_name: str = "clients.csv", **options) -> ImportRequest:
        raw = data.encode() if isinstance(data, str) else data
        job_id = str(uuid.uuid4())
        return ImportRequest(
            job_id=job_id,
            job_signature=jobs.sign(self.signing_key, job_id),
            requested_by="e2e",
            source=Source.TOPIC,
            file_name=file_name,
            content_base64=base64.b64encode(raw).decode(),
            options=ImportOptions(**options),
        )

    async def run(self, data: bytes | str, file_name: str = "clients.csv", timeout: float = 60, **options) -> ImportNotification:
        request = self.request(data, file_name, **options)
        await self.client.submit(request)
        return (await self.client.wait([request.job_id], timeout))[request.job_id]


def unique_domain() -> str:
    """Each test imports its own emails, so tests never see each other's clients."""
    return f"t{uuid.uuid4().hex[:10]}.example.com"


async def clients_of(engine: AsyncEngine, domain: str) -> dict[str, dict]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(clients).where(clients.c.email.like(f"%@{domain}")))).mappings()
        return {r["email"]: dict(r) for r in rows}


@contextlib.asynccontextmanager
async def served_api(settings: Settings, engine: AsyncEngine) -> AsyncIterator[int]:
    """The HTTP API served the way `clients-import serve` serves it (with its head and body bounds), on a
    free loopback port, until the block ends."""
    import asyncio

    import uvicorn
    from faststream.kafka.fastapi import KafkaRouter

    from clients_import.local_kafka import free_port
    from services.api.app import build_api
    from services.api.limits import server_config
    from shared.kafka import broker_options

    router = KafkaRouter(**broker_options(settings), schema_url=None, include_in_schema=False)
    port = free_port()
    server = uvicorn.Server(server_config(build_api(settings, engine, router), settings, host="127.0.0.1", port=port))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        yield port
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def api(settings: Settings, engine: AsyncEngine, pipeline: Pipeline) -> AsyncIterator[str]:
    """The HTTP API on a free loopback port, in front of the session's pipeline."""
    async with served_api(settings, engine) as port:
        yield f"http://127.0.0.1:{port}"


async def asgi_body(receive) -> bytes:
    """The whole body of a request to a test's own ASGI app (a webhook receiver, say)."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


class SecuredKafka(NamedTuple):
    bootstrap: str
    username: str
    password: str


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[SecuredKafka]:
    """A local broker that takes only SCRAM logins (SASL_PLAINTEXT), started as an operator would:
    `clients-import broker --sasl`, which makes a user and prints the settings to log in with.
    For the module that asks for it only (never two extra brokers at once)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    errors = tempfile.TemporaryFile("w+")
    process = subprocess.Popen([sys.executable, "-m", "clients_import.cli", "broker", "--sasl"], env=env,
                               stdout=subprocess.PIPE, stderr=errors, text=True)
    printed: dict[str, str] = {}

    def read() -> None:
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            printed[key] = value
            if key == "KAFKA_SASL_PASSWORD":
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=180)
    try:
        errors.seek(0)
        assert "KAFKA_SASL_PASSWORD" in printed, f"the secured broker did not start: {errors.read()[-3000:]}"
        assert printed["KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT"
        yield SecuredKafka(printed["KAFKA_BOOTSTRAP_SERVERS"], printed["KAFKA_SASL_USERNAME"], printed["KAFKA_SASL_PASSWORD"])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        errors.close()


class TlsKafka(NamedTuple):
    bootstrap: str
    username: str
    password: str
    certificates: Certificates


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsKafka]:
    """A local broker on SASL_SSL: TLS with a test CA's certificate for 127.0.0.1, a client certificate
    required (mTLS), then a SCRAM login."""
    from clients_import.local_kafka import LocalKafka, ScramUser, TlsFiles

    from .tls import make_certificates

    certificates = make_certificates(tmp_path_factory.mktemp("tls"))
    user = ScramUser("crm-import", secrets.token_urlsafe(24))
    tls = TlsFiles(certificates.broker_keystore, certificates.ca, client_auth=True)
    with LocalKafka(scram=user, tls=tls) as kafka:
        yield TlsKafka(kafka.bootstrap, user.name, user.password, certificates)
