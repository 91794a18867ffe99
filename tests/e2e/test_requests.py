"""The request contract on clients.import.requests: idempotency, modes, dry runs, callbacks, bad requests."""

import asyncio
import hashlib
import hmac
import json
import time
import uuid

import httpx
import uvicorn
from aiokafka import AIOKafkaProducer
from sqlalchemy import select
from starlette.datastructures import Headers

from clients_import.local_kafka import free_port
from services.notifier.webhook import DELIVERY_HEADER
from shared import topics
from shared.events import ImportNotification, ImportRequest, JobAccepted, JobStatus, Source
from shared.tables import import_jobs

from ..conftest import WEBHOOK_SECRET
from ..webhook_recipe import verify_webhook
from .conftest import asgi_body, clients_of, unique_domain
from .kafka_tools import of_job, produce_raw, read_topic, wait_until_drained


def keyed(partner, text: str, key: str, **options) -> ImportRequest:
    """A partner's request: no job id of ours, only its idempotency key."""
    return partner.request(text, **options).model_copy(update={"job_id": None, "job_signature": None, "idempotency_key": key})


async def test_the_same_idempotency_key_twice_is_one_job_and_both_requests_get_its_notification(partner, settings, engine):
    d = unique_domain()
    first = keyed(partner, f"firstName,email\nKay,kay@{d}\n", f"order-{d}")
    await partner.client.submit(first)
    note = await _next_notification(partner)
    await partner.client.submit(keyed(partner, f"firstName,email\nKay,kay@{d}\n", f"order-{d}"))
    again = await _next_notification(partner)

    assert again.job_id == note.job_id and again.created == note.created == 1
    assert list(await clients_of(engine, d)) == [f"kay@{d}"]
    jobs_topic = [json.loads(r.value) for r in of_job(await read_topic(settings, topics.JOBS), note.job_id)]
    assert sum(1 for e in jobs_topic if e["job_id"] == note.job_id and e["event"] == "job.accepted") == 1


async def test_an_idempotency_key_reused_for_another_file_is_refused_and_imports_nothing(partner, engine):
    """As Stripe does: a key is bound to what it was first used with. Another file under it is refused,
    so nobody who learns a key can re-notify, change or take over the job it names."""
    d = unique_domain()
    await partner.client.submit(keyed(partner, f"firstName,email\nKay,kay@{d}\n", f"order-{d}"))
    note = await _next_notification(partner)
    await partner.client.submit(keyed(partner, f"firstName,email\nKay,kay@{d}\nLee,lee@{d}\n", f"order-{d}"))
    refused = await _next_notification(partner)

    assert (refused.status, refused.reason.code) == (JobStatus.REJECTED, "idempotency_key_reused")
    assert refused.job_id != note.job_id
    assert list(await clients_of(engine, d)) == [f"kay@{d}"]


async def test_a_malformed_request_cannot_take_the_key_of_the_corrected_one_ahead(partner, settings, engine):
    d = unique_domain()
    broken = {"idempotency_key": f"batch-{d}", "requested_by": "partner", "file_name": "x.csv",
              "options": {"mode": "upsrt"}, "content": f"firstName,email\nAnn,ann@{d}\n"}
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.REQUESTS, json.dumps(broken).encode(), key=b"broken")
    finally:
        await producer.stop()
    refused = await _next_notification(partner)
    await partner.client.submit(keyed(partner, f"firstName,email\nAnn,ann@{d}\n", f"batch-{d}"))
    imported = await _next_notification(partner)

    assert refused.reason.code == "invalid_request"
    assert (imported.status, imported.created) == (JobStatus.COMPLETED, 1)
    assert imported.job_id != refused.job_id


async def _next_notification(partner, timeout: float = 30) -> ImportNotification:
    """The next notification on the topic, whichever job it is for."""
    for _ in range(int(timeout / 0.2)):
        for records in (await partner.client.consumer.getmany(timeout_ms=200)).values():
            for record in records:
                if record.topic == topics.NOTIFICATIONS:
                    return ImportNotification.model_validate_json(record.value)
    raise AssertionError("no notification came")


async def test_create_only_refuses_known_emails_and_update_only_refuses_unknown_ones(partner, engine):
    d = unique_domain()
    await partner.run(f"firstName,email\nOld,old@{d}\n")

    created = await partner.run(f"firstName,email\nOld,old@{d}\nNew,new@{d}\n", mode="create_only")
    updated = await partner.run(f"firstName,email\nOlder,old@{d}\nGhost,ghost@{d}\n", mode="update_only")

    assert (created.created, created.rejected, created.errors[0].code) == (1, 1, "already_exists")
    assert (updated.updated, updated.rejected, updated.errors[0].code) == (1, 1, "not_found")
    stored = await clients_of(engine, d)
    assert set(stored) == {f"old@{d}", f"new@{d}"} and stored[f"old@{d}"]["first_name"] == "Older"


async def test_a_dry_run_reports_everything_and_writes_nothing(partner, engine):
    d = unique_domain()
    note = await partner.run(f"firstName,email\nDry,dry@{d}\n,wet@{d}\n", dry_run=True)
    assert (note.status, note.dry_run, note.created, note.rejected) == (JobStatus.VALIDATED, True, 1, 1)
    assert await clients_of(engine, d) == {}


class Receiver:
    """A partner's webhook receiver doing what the README's recipe says: it verifies each call (refusing a
    forged or stale one with 400, taking a delivery id once), fails its first `failures` deliveries as a
    receiver whose processing broke would (forgetting their id, answering 500), then accepts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: set = set()
        self.now: float | None = None  # the receiver's clock; None: the real one
        self.calls: list[tuple[dict, bytes, int]] = []  # (headers, body, the status answered)
        self.processed: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        body = await asgi_body(receive)
        headers = Headers(scope=scope)
        try:
            fresh = verify_webhook(WEBHOOK_SECRET, headers, body, self.seen, now=self.now)
        except ValueError:
            status = 400
        else:
            status = 200
            if fresh and self.failures > 0:
                self.failures -= 1
                self.seen.discard(headers[DELIVERY_HEADER])
                status = 500
            elif fresh:
                self.processed.append(body)
        self.calls.append(({k: v for k, v in headers.items()}, body, status))
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_the_notification_is_posted_signed_retried_after_a_failure_and_a_replay_is_refused(partner, engine):
    receiver = Receiver(failures=1)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None))
    task = asyncio.create_task(server.serve())
    try:
        d = unique_domain()
        note = await partner.run(f"firstName,email\nHook,hook@{d}\n", callback_url=f"http://127.0.0.1:{port}/hook")
        for _ in range(100):
            if len(receiver.calls) >= 2:
                break
            await asyncio.sleep(0.1)
        assert [status for _, _, status in receiver.calls] == [500, 200]
        headers, body, _ = receiver.calls[-1]
        assert receiver.calls[0][0][DELIVERY_HEADER.lower()] == headers[DELIVERY_HEADER.lower()]  # one delivery, retried

        # Someone who captured the call sends it again: taken once only, and refused once it is old.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as attacker:
            again = await attacker.post("/hook", content=body, headers=headers)
            receiver.seen.clear()  # a receiver that forgot its ids (they need keeping for the tolerance only)
            receiver.now = time.time() + 301
            later = await attacker.post("/hook", content=body, headers=headers)
    finally:
        server.should_exit = True
        await task

    assert (again.status_code, later.status_code) == (200, 400)
    assert receiver.processed == [body]  # the notification was processed exactly once
    expected = "sha256=" + hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-clients-import-signature"], expected)  # the first version's header, kept
    assert json.loads(body)["job_id"] == note.job_id and json.loads(body)["created"] == 1
    for _ in range(50):
        async with engine.connect() as conn:
            outcome = await conn.scalar(select(import_jobs.c.callback_outcome).where(import_jobs.c.id == note.job_id))
        if outcome:
            break
        await asyncio.sleep(0.1)
    assert outcome == "delivered on attempt 2"


async def test_a_callback_to_a_local_address_is_refused_with_the_request_and_never_called(partner, engine):
    d = unique_domain()
    for url in ("https://169.254.169.254/latest/meta-data/", "https://2130706433/", "https://[::ffff:10.0.0.1]/",
                "http://127.0.0.2:9/", "https://localhost/hook"):
        note = await partner.run(f"firstName,email\nNo,no@{d}\n", callback_url=url)
        assert (note.status, note.reason.code) == (JobStatus.REJECTED, "invalid_request"), url
        assert "callback_url must name a public host" in note.reason.message
        async with engine.connect() as conn:
            stored = await conn.scalar(select(import_jobs.c.callback_url).where(import_jobs.c.id == note.job_id))
        assert stored is None  # nothing left to call, nor to tell the refusal to
    assert await clients_of(engine, d) == {}


async def test_a_malformed_request_goes_to_the_dlq_gets_a_rejected_notification_and_the_next_is_imported(partner, settings):
    d = unique_domain()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.REQUESTS, b"{not json", key=b"broken-request")
        addressable = {"idempotency_key": f"bad-{d}", "requested_by": "partner", "file_name": "x.csv"}  # no content
        await producer.send_and_wait(topics.REQUESTS, json.dumps(addressable).encode(), key=b"addressable-request")
    finally:
        await producer.stop()

    refused = await _next_notification(partner)
    good = await partner.run(f"firstName,email\nFine,fine@{d}\n")

    assert (refused.status, refused.reason.code, refused.file_name) == (JobStatus.REJECTED, "invalid_request", "x.csv")
    assert "content" in refused.reason.message
    assert good.created == 1
    await wait_until_drained(settings)
    dead = {r.key: dict((k, v.decode()) for k, v in r.headers) for r in await read_topic(settings, topics.DLQ)}
    assert dead[b"broken-request"]["dlq.original.topic"] == topics.REQUESTS
    assert dead[b"addressable-request"]["dlq.stage"] == "uploader"


async def test_a_job_that_never_finishes_fails_at_its_deadline(partner, settings):
    job_id = str(uuid.uuid4())
    stuck = JobAccepted(job_id=job_id, file_name="stuck.csv", source=Source.TOPIC, requested_by="e2e",
                        options={}, total=3, chunks=1)  # its chunk never comes
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.JOBS, stuck.model_dump_json().encode(), key=job_id.encode())
    finally:
        await producer.stop()
    note = (await partner.client.wait([job_id], timeout=settings.job_deadline_s + 15))[job_id]
    assert (note.status, note.reason.code) == (JobStatus.FAILED, "deadline_exceeded")
    assert f"{settings.job_deadline_s:.0f} seconds" in note.reason.message


async def test_a_request_compressed_with_any_codec_kafka_has_is_imported(partner, settings, engine):
    """Java and librdkafka producers often compress (lz4, snappy, zstd): without the codec, the partition
    would stop until it was installed."""
    d = unique_domain()
    requests = {codec: partner.request(f"firstName,email\nZip,{codec}@{d}\n")
                for codec in ("gzip", "snappy", "lz4", "zstd")}
    for codec, request in requests.items():
        await asyncio.to_thread(produce_raw, settings, topics.REQUESTS, 0, request.job_id.encode(),
                                request.model_dump_json().encode(), [], codec)
    notes = await partner.client.wait([r.job_id for r in requests.values()], timeout=60)
    assert {codec: notes[r.job_id].created for codec, r in requests.items()} == dict.fromkeys(requests, 1)
