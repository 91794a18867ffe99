"""Nothing is lost on a restart: a webhook delivery in the middle of its retries is resumed by the next
notifier with its attempts counted, and a page session outlives the API process that opened it."""

import asyncio
import hashlib
import hmac
import json
import uuid

import httpx
import uvicorn
from faststream.kafka.fastapi import KafkaRouter
from sqlalchemy import select

from clients_import.client import ImportClient
from clients_import.local_kafka import free_port
from clients_import.pipeline import Pipeline
from services.api.app import SESSION_COOKIE, build_api
from shared import jobs
from shared.db import create_engine
from shared.events import ImportOptions, ImportRequest, Source
from shared.kafka import broker_options
from shared.settings import Settings
from shared.tables import import_jobs, page_sessions, webhook_deliveries

from ..conftest import API_TOKEN
from .conftest import asgi_body, unique_domain
from .kafka_tools import start_groups_at_the_end


class Receiver:
    """A partner's webhook receiver: answers 503 until told to accept. It counts the calls signed with
    its own secret; the session's own pipeline (another consumer group on the same broker) imports the
    same request and calls back signed with the session's secret: answered, not counted."""

    def __init__(self, secret: str) -> None:
        self.secret, self.accepting = secret, False
        self.calls: list[tuple[int, bytes]] = []  # (the status answered, the body)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await asgi_body(receive)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        expected = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        status = 202
        if hmac.compare_digest(headers.get("x-clients-import-signature", ""), expected):
            status = 200 if self.accepting else 503
            self.calls.append((status, body))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


class Served:
    """An ASGI app under uvicorn on a free loopback port."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    access_log=False))
        self.task: asyncio.Task | None = None

    async def start(self) -> "Served":
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.05)
        return self

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def until(check, timeout: float = 30.0, what: str = "the condition"):
    for _ in range(int(timeout / 0.05)):
        found = await check()
        if found:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} did not come within {timeout:.0f} s")


async def test_a_webhook_failing_until_the_notifier_restarts_is_delivered_once_with_its_attempts_counted(
    settings, pipeline, tmp_path
):
    # The session's pipeline runs too (`pipeline`): it takes this test's request as it comes, like any
    # other, rather than finding it later in the topics' history and announcing it to a later test.
    secret = f"restart-secret-{uuid.uuid4().hex}"
    url = f"sqlite+aiosqlite:///{tmp_path / 'restarts.db'}"
    mine = settings.model_copy(update={
        "group_prefix": f"restart-{uuid.uuid4().hex[:8]}", "database_url": url, "webhook_secret": secret,
        "webhook_attempts": 6, "webhook_backoff_s": 0.5, "webhook_timeout_s": 2.0,
    })
    engine = create_engine(url)
    receiver = Receiver(secret)
    hooks = await Served(receiver).start()

    async def delivery() -> dict | None:
        async with engine.connect() as conn:
            row = (await conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.job_id == job_id))).mappings().first()
        return dict(row) if row else None

    async def outcome() -> str | None:
        async with engine.connect() as conn:
            return await conn.scalar(select(import_jobs.c.callback_outcome).where(import_jobs.c.id == job_id))

    try:
        await start_groups_at_the_end(mine)
        job_id = str(uuid.uuid4())
        request = ImportRequest(
            job_id=job_id, job_signature=jobs.sign(mine.signing_key, job_id), requested_by="e2e-restarts",
            source=Source.TOPIC, file_name="restart.csv", content=f"firstName,email\nRe,re@{unique_domain()}\n",
            options=ImportOptions(callback_url=f"{hooks.url}/hook"),
        )
        first = await Pipeline(mine, engine=engine).start()
        try:
            async with ImportClient(mine) as client:
                await client.submit(request)
                note = (await client.wait([job_id], timeout=60))[job_id]

            async def second_attempt_failed():
                row = await delivery()
                return row if row and row["attempts"] == 2 and (row["outcome"] or "").startswith("attempt 2 failed") else None

            # Stop between two attempts: the third is due a second after the second (0.5 s doubled).
            await until(second_attempt_failed, what="a second failed attempt")
        finally:
            await first.stop()
        assert [status for status, _ in receiver.calls] == [503, 503]
        assert await outcome() is None

        receiver.accepting = True
        async with Pipeline(mine, engine=engine):
            final = await until(outcome, what="the callback's outcome")
            await asyncio.sleep(1.5)  # long enough for a retry that should not come
        row = await delivery()
    finally:
        await hooks.stop()
        await engine.dispose()

    assert final == "delivered on attempt 3"
    assert (row["attempts"], row["outcome"], row["done_at"] is not None) == (3, final, True)
    assert [status for status, _ in receiver.calls] == [503, 503, 200]  # one success, every attempt counted
    assert {body for _, body in receiver.calls} == {row["body"].encode()}  # the outbox's copy, each time
    sent = json.loads(row["body"])
    assert (sent["job_id"], sent["status"], sent["created"]) == (job_id, note.status.value, 1)


class Api:
    """The HTTP API as `serve api` runs it: one process of it, on the session's database and broker."""

    def __init__(self, settings: Settings, engine) -> None:
        router = KafkaRouter(**broker_options(settings), schema_url=None, include_in_schema=False)
        self.served = Served(build_api(settings, engine, router))

    async def __aenter__(self) -> httpx.AsyncClient:
        await self.served.start()
        self.http = httpx.AsyncClient(base_url=self.served.url, timeout=10)
        return self.http

    async def __aexit__(self, *_: object) -> None:
        await self.http.aclose()
        await self.served.stop()


async def test_a_page_session_survives_an_api_restart_and_signing_out_ends_it_everywhere(settings, engine):
    async with Api(settings, engine) as http:
        signed_in = await http.post("/session", json={"token": API_TOKEN})
        assert signed_in.status_code == 204
        token = signed_in.cookies[SESSION_COOKIE]
        assert (await http.get("/session", headers={"Cookie": f"{SESSION_COOKIE}={token}"})).status_code == 200
    # That API process is gone. The database knows the session by its hash only.
    digest = hashlib.sha256(token.encode()).hexdigest()
    async with engine.connect() as conn:
        stored = set((await conn.execute(select(page_sessions.c.token_hash))).scalars())
    assert digest in stored and token not in stored

    cookie = {"Cookie": f"{SESSION_COOKIE}={token}"}
    async with Api(settings, engine) as restarted, Api(settings, engine) as another:
        for http in (restarted, another):
            answer = await http.get("/session", headers=cookie)
            assert (answer.status_code, answer.json()) == (200, {"signed_in": True, "as": "web"})

        assert (await restarted.delete("/session", headers={**cookie, "X-Requested-With": "clients-import"})).status_code == 204

        for http in (restarted, another):
            answer = await http.get("/session", headers=cookie)
            assert (answer.status_code, answer.json()["code"]) == (401, "unauthorized")
            assert (await http.get("/imports", headers=cookie)).status_code == 401
    async with engine.connect() as conn:
        assert await conn.scalar(select(page_sessions.c.token_hash).where(page_sessions.c.token_hash == digest)) is None
