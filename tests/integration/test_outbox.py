"""The notifier's webhook outbox on each database backend: one delivery per notification, claims that
two notifiers never share, attempts counted across restarts, doubling back-off, the final outcome on
the job, and the metrics. The HTTP side is a fake (httpx's MockTransport)."""

import asyncio
import hashlib
import hmac
import uuid
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select

from services.notifier import ledger, outbox
from services.notifier.app import Notifier
from services.notifier.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, TIMED_SIGNATURE_HEADER, Answer, Sender
from shared import topics
from shared.callbacks import CallbackPolicy
from shared.db import as_utc, create_engine
from shared.events import ImportOptions, JobAccepted, JobRepeated, Outcome, RowResult, RowsWritten, Source
from shared.metrics import REGISTRY
from shared.readback import MemoryPublishedLog
from shared.settings import Settings
from shared.tables import import_jobs, webhook_deliveries

SECRET = "outbox-test-secret"
URL = "https://partner.example/hooks/import"
PARTNER_ADDRESS = "93.184.216.34"  # what partner.example resolves to here (a public address; nothing is contacted)
NOW = datetime(2030, 1, 1, tzinfo=UTC)
TAKEN = Answer(True, "2xx", "HTTP 200")
UNAVAILABLE = Answer(False, "5xx", "HTTP 503")


async def a_job(db, callback_url: str | None = URL) -> str:
    job = str(uuid.uuid4())
    async with db.begin() as conn:
        await ledger.record_jobs(conn, [JobAccepted(
            job_id=job, file_name="f.csv", source=Source.TOPIC, requested_by="t",
            options=ImportOptions(callback_url=callback_url), total=1, chunks=1)])
    return job


async def delivery(db, job: str) -> dict:
    async with db.connect() as conn:
        row = (await conn.execute(select(webhook_deliveries).where(webhook_deliveries.c.job_id == job))).mappings().one()
    return {**row, "next_attempt_at": as_utc(row["next_attempt_at"]), "done_at": as_utc(row["done_at"])}


async def callback_outcome(db, job: str) -> str | None:
    async with db.connect() as conn:
        return await conn.scalar(select(import_jobs.c.callback_outcome).where(import_jobs.c.id == job))


async def enqueued(db, job: str, body: str = '{"job_id": "x"}', now: datetime = NOW) -> None:
    async with db.begin() as conn:
        await outbox.enqueue(conn, job, URL, body, now)


async def claim(db, now: datetime, max_attempts: int = 3, lease_s: float = 15.0, limit: int = 1000):
    async with db.begin() as conn:
        claimed, closed = await outbox.claim(conn, now, limit, lease_s, max_attempts)
    return claimed, closed


async def record(db, delivery_: outbox.Delivery, answer: Answer, now: datetime, max_attempts: int = 3):
    async with db.begin() as conn:
        return await outbox.record(conn, delivery_, answer, now, max_attempts, 0.5)


def mine(claimed: list[outbox.Delivery], job: str) -> list[outbox.Delivery]:
    return [d for d in claimed if d.job_id == job]


async def test_a_delivery_is_added_once_and_again_only_after_it_is_done(db):
    job = await a_job(db)
    await enqueued(db, job, '{"n": 1}')
    await enqueued(db, job, '{"n": 2}')  # the same `then` run again: the pending delivery is kept
    row = await delivery(db, job)
    assert (row["body"], row["attempts"], row["done_at"], row["next_attempt_at"]) == ('{"n": 1}', 0, None, NOW)

    [taken] = mine((await claim(db, NOW))[0], job)
    assert await record(db, taken, TAKEN, NOW) == ("delivered", "delivered on attempt 1")

    later = NOW + timedelta(minutes=5)
    await enqueued(db, job, '{"n": 3}', later)  # the request was repeated: the job is delivered again
    row = await delivery(db, job)
    assert (row["body"], row["attempts"], row["outcome"], row["done_at"], row["next_attempt_at"]) == (
        '{"n": 3}', 0, None, None, later)


async def test_a_claim_counts_the_attempt_and_holds_the_delivery_until_its_lease_runs_out(db):
    job = await a_job(db)
    await enqueued(db, job)

    [first] = mine((await claim(db, NOW, lease_s=15))[0], job)
    assert (first.attempt, first.url) == (1, URL)
    assert mine((await claim(db, NOW + timedelta(seconds=14)))[0], job) == []  # another notifier: not yet
    row = await delivery(db, job)
    assert (row["attempts"], row["next_attempt_at"]) == (1, NOW + timedelta(seconds=15))

    # The first notifier stopped mid-attempt: once the lease is over the next one resumes, attempt 2.
    [resumed] = mine((await claim(db, NOW + timedelta(seconds=15)))[0], job)
    assert resumed.attempt == 2
    # The first notifier's late answer no longer counts.
    assert await record(db, first, TAKEN, NOW + timedelta(seconds=16)) is None
    assert (await delivery(db, job))["done_at"] is None
    assert await record(db, resumed, TAKEN, NOW + timedelta(seconds=16)) == ("delivered", "delivered on attempt 2")
    assert await callback_outcome(db, job) == "delivered on attempt 2"


async def test_failures_back_off_doubling_and_the_last_one_is_the_outcome(db):
    job = await a_job(db)
    await enqueued(db, job)
    now, waits = NOW, []
    for attempt in (1, 2):
        [taken] = mine((await claim(db, now))[0], job)
        assert taken.attempt == attempt
        assert await record(db, taken, UNAVAILABLE, now) == ("retried", f"attempt {attempt} failed (5xx); retrying")
        row = await delivery(db, job)
        waits.append(row["next_attempt_at"] - now)
        assert mine((await claim(db, row["next_attempt_at"] - timedelta(milliseconds=1)))[0], job) == []
        now = row["next_attempt_at"]
    assert waits == [timedelta(seconds=0.5), timedelta(seconds=1)]
    assert await callback_outcome(db, job) is None  # nothing final yet

    [last] = mine((await claim(db, now))[0], job)
    refused = Answer(False, "connection failed", "ConnectError: [Errno 111] Connection refused")
    assert await record(db, last, refused, now) == ("failed", "failed after 3 attempts (last: connection failed)")
    row = await delivery(db, job)
    assert (row["attempts"], row["done_at"], row["outcome"]) == (3, now, "failed after 3 attempts (last: connection failed)")
    assert await callback_outcome(db, job) == "failed after 3 attempts (last: connection failed)"
    assert mine((await claim(db, now + timedelta(days=1)))[0], job) == []


async def test_a_delivery_whose_last_attempt_was_cut_short_is_closed_not_attempted_again(db):
    job = await a_job(db)
    await enqueued(db, job)
    [taken] = mine((await claim(db, NOW, max_attempts=1))[0], job)
    async with db.begin() as conn:
        await outbox.release(conn, [taken], NOW + timedelta(seconds=1))  # a notifier stopped mid-attempt
    row = await delivery(db, job)
    assert (row["attempts"], row["next_attempt_at"], row["done_at"]) == (1, NOW + timedelta(seconds=1), None)

    claimed, closed = await claim(db, NOW + timedelta(seconds=1), max_attempts=1)
    assert mine(claimed, job) == []
    outcome = f"failed after 1 attempts (last: {outbox.INTERRUPTED})"
    assert (job, outcome) in closed
    assert await callback_outcome(db, job) == outcome


async def test_notifiers_claiming_at_once_never_take_the_same_delivery(db):
    jobs = {await a_job(db) for _ in range(30)}
    early = NOW - timedelta(days=1)  # due for these claims; the other tests' deliveries at NOW are not
    for job in jobs:
        await enqueued(db, job, now=early)
    other = create_engine(db.url.render_as_string(hide_password=False))  # a second process, in effect
    try:
        takes = await asyncio.gather(*(_claim_all(engine, early) for engine in (db, db, other, other)))
    finally:
        await other.dispose()
    taken = [job for take in takes for job in take if job in jobs]
    assert sorted(taken) == sorted(jobs)  # every delivery claimed, none twice


async def _claim_all(engine, now: datetime) -> list[str]:
    taken: list[str] = []
    for _ in range(12):
        claimed, _closed = await claim(engine, now, limit=4)
        taken += [d.job_id for d in claimed]
        await asyncio.sleep(0)
    return taken


# --- the notifier: from the published notification to the receiver, through the outbox ------------


class FakeReceiver:
    """Answers each POST with the next status given (or raises the exception given), then 200."""

    def __init__(self, *answers: int | Exception) -> None:
        self.answers = list(answers)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        answer = self.answers.pop(0) if self.answers else 200
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(answer)


async def a_notifier(db, receiver: FakeReceiver, **settings) -> Notifier:
    async def publish(_publications) -> None:
        return None

    options = dict(webhook_secret=SECRET, webhook_attempts=3, webhook_backoff_s=0, webhook_timeout_s=5) | settings
    notifier = Notifier(Settings(_env_file=None, **options), db, publish, MemoryPublishedLog({}))
    await notifier.webhooks.aclose()
    notifier.webhooks = Sender(SECRET, CallbackPolicy(), notifier.settings.webhook_timeout_s, resolver=partner_resolver,
                               client=httpx.AsyncClient(transport=httpx.MockTransport(receiver), follow_redirects=False))
    return notifier


async def partner_resolver(host: str, port: int) -> list[str]:
    return [PARTNER_ADDRESS] if host == "partner.example" else []


async def deliver_until_done(notifier: Notifier, db, job: str) -> dict:
    for _ in range(100):
        await notifier.deliver_due()
        row = await delivery(db, job)
        if row["done_at"] is not None:
            return row
    raise AssertionError(f"the delivery of {job} was not done: {row}")


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def metrics() -> dict[str, float]:
    return {
        "completed": sample("clients_import_jobs_total", status="completed"),
        "timed": sample("clients_import_request_to_notification_seconds_count"),
        **{o: sample("clients_import_webhooks_total", outcome=o) for o in ("delivered", "retried", "failed")},
    }


def delta(before: dict[str, float]) -> dict[str, float]:
    return {k: v - before[k] for k, v in metrics().items() if v != before[k]}


async def test_a_notified_job_is_delivered_once_signed_and_retried_and_a_repeated_request_delivers_it_again(db):
    receiver = FakeReceiver(503)
    notifier = await a_notifier(db, receiver)
    job = await a_job(db)
    written = RowsWritten(job_id=job, results=(
        RowResult(row=1, line=2, outcome=Outcome.CREATED, email="a@x.com", client_id="1"),))
    before = metrics()

    await notifier.announcements(await notifier.record([written]))  # published, but its then() failed:
    handled = await notifier.announcements(await notifier.record([written]))  # the runner runs it all again
    assert [p.event.job_id for p in handled.publications if p.topic == topics.NOTIFICATIONS] == [job]
    await handled.then()
    async with db.begin() as conn:  # as a then() that failed after its transaction would: changes nothing
        await outbox.enqueue(conn, job, URL, "{}", datetime.now(UTC))
    row = await deliver_until_done(notifier, db, job)

    assert (row["attempts"], row["outcome"]) == (2, "delivered on attempt 2")
    assert await callback_outcome(db, job) == "delivered on attempt 2"
    assert len(receiver.calls) == 2
    last = receiver.calls[-1]
    body = last.content
    assert last.headers[SIGNATURE_HEADER] == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    # One delivery, one id, on every attempt; each attempt signs its own time with it.
    delivery_id = last.headers[DELIVERY_HEADER]
    assert receiver.calls[0].headers[DELIVERY_HEADER] == delivery_id == row["delivery_id"]
    stamp = int(last.headers[TIMED_SIGNATURE_HEADER].split(",")[0].removeprefix("t="))
    signed = hmac.new(SECRET.encode(), f"{stamp}.{delivery_id}.".encode() + body, hashlib.sha256).hexdigest()
    assert last.headers[TIMED_SIGNATURE_HEADER] == f"t={stamp},v1={signed}"
    assert f'"job_id":"{job}"' in body.decode()
    assert (str(last.url), last.headers["host"]) == (URL.replace("partner.example", PARTNER_ADDRESS), "partner.example")
    assert delta(before) == {"completed": 1, "timed": 1, "retried": 1, "delivered": 1}

    before = metrics()
    handled = await notifier.announcements(await notifier.record([JobRepeated(job_id=job)]))
    assert [p.event.job_id for p in handled.publications if p.topic == topics.NOTIFICATIONS] == [job]
    await handled.then()
    row = await deliver_until_done(notifier, db, job)
    assert (row["attempts"], row["outcome"]) == (1, "delivered on attempt 1")
    assert len(receiver.calls) == 3
    assert receiver.calls[-1].headers[DELIVERY_HEADER] == row["delivery_id"] != delivery_id  # a new delivery
    assert delta(before) == {"delivered": 1}  # a repeated request is not another job
    await notifier.close()


async def test_a_restarted_notifier_resumes_the_delivery_with_its_attempts_counted(db):
    job = await a_job(db)
    first = await a_notifier(db, FakeReceiver(500), webhook_backoff_s=0.05)
    async with db.begin() as conn:
        await outbox.enqueue(conn, job, URL, f'{{"job_id": "{job}"}}', datetime.now(UTC))
    await first.deliver_due()
    await first.close()  # a restart, between two attempts
    assert ((await delivery(db, job))["attempts"], await callback_outcome(db, job)) == (1, None)

    receiver = FakeReceiver(httpx.ConnectError("refused"))
    second = await a_notifier(db, receiver, webhook_backoff_s=0.05)
    await asyncio.sleep(0.06)
    row = await deliver_until_done(second, db, job)
    await second.close()
    assert (row["attempts"], row["outcome"]) == (3, "delivered on attempt 3")
    assert len(receiver.calls) == 2


async def test_an_attempt_cut_short_by_a_stop_is_handed_back_and_at_most_the_allowed_attempts_are_made(db):
    job = await a_job(db)
    started = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.sleep(60)
        return httpx.Response(200)

    stopping = await a_notifier(db, hang, webhook_attempts=2)
    async with db.begin() as conn:
        await outbox.enqueue(conn, job, URL, "{}", datetime.now(UTC))
    loop = asyncio.create_task(stopping.run_deliveries())
    await asyncio.wait_for(started.wait(), 10)
    loop.cancel()
    await asyncio.gather(loop, return_exceptions=True)
    await stopping.close()
    row = await delivery(db, job)
    assert (row["attempts"], row["done_at"]) == (1, None) and row["next_attempt_at"] <= datetime.now(UTC)

    receiver = FakeReceiver(502, 502)
    restarted = await a_notifier(db, receiver, webhook_attempts=2)
    row = await deliver_until_done(restarted, db, job)
    await restarted.close()
    assert (row["attempts"], row["outcome"], len(receiver.calls)) == (2, "failed after 2 attempts (last: 5xx)", 1)
    assert await callback_outcome(db, job) == "failed after 2 attempts (last: 5xx)"


async def test_redirects_are_not_followed_and_a_slow_receiver_times_out(db):
    job, slow_job = await a_job(db), await a_job(db)

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("slow"):
            await asyncio.sleep(5)
        return httpx.Response(302, headers={"Location": "https://elsewhere.example/"})

    notifier = await a_notifier(db, answer, webhook_attempts=1, webhook_timeout_s=0.2)
    notifier.webhooks.client = httpx.AsyncClient(transport=httpx.MockTransport(answer), follow_redirects=True)  # even so
    async with db.begin() as conn:
        await outbox.enqueue(conn, job, URL, "{}", datetime.now(UTC))
        await outbox.enqueue(conn, slow_job, URL + "/slow", "{}", datetime.now(UTC))
    assert (await deliver_until_done(notifier, db, job))["outcome"] == (
        "failed after 1 attempts (last: 3xx (redirects are not followed))")
    assert (await deliver_until_done(notifier, db, slow_job))["outcome"] == "failed after 1 attempts (last: timeout)"
    await notifier.close()


async def test_the_job_says_only_how_the_delivery_went_never_what_the_receiver_answered(db):
    def tell(request: httpx.Request) -> httpx.Response:
        return httpx.Response(418, headers={"Server": "internal-admin/1.2"}, text="root:x:0:0:root:/root:/bin/bash")

    notifier = await a_notifier(db, tell, webhook_attempts=1)
    job = await a_job(db)
    async with db.begin() as conn:
        await outbox.enqueue(conn, job, URL, "{}", datetime.now(UTC))
    row = await deliver_until_done(notifier, db, job)
    await notifier.close()
    assert row["outcome"] == await callback_outcome(db, job) == "failed after 1 attempts (last: 4xx)"


async def test_a_callback_to_a_local_address_is_never_made_and_the_job_says_it_was_refused(db):
    """URLs taken before the rule (or under a wider one) are checked again at delivery; a name is resolved
    then, and refused when it resolves to a local address."""
    calls: list[httpx.Request] = []
    notifier = await a_notifier(db, FakeReceiver())
    notifier.webhooks.client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: calls.append(r) or httpx.Response(200)))
    resolved: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        resolved.append(host)
        return {"partner.example": [PARTNER_ADDRESS, "10.0.0.7"], "hooks.partner.example": ["::ffff:169.254.169.254"]}[host]

    notifier.webhooks.resolver = rebinding
    by_text = {url: await a_job(db) for url in ("https://169.254.169.254/latest/meta-data/", "https://2130706433/",
                                                "https://[::ffff:7f00:1]/", "http://partner.example/", "https://u:p@partner.example/")}
    by_address = {url: await a_job(db) for url in (URL, "https://hooks.partner.example/")}
    async with db.begin() as conn:
        for url, job in {**by_text, **by_address}.items():
            await outbox.enqueue(conn, job, url, "{}", datetime.now(UTC))
    for url, job in by_text.items():
        row = await deliver_until_done(notifier, db, job)
        assert row["attempts"] == 1 and row["outcome"].startswith("not sent: refused URL: callback_url must"), (url, row)
    for job in by_address.values():
        row = await deliver_until_done(notifier, db, job)
        assert (row["attempts"], row["outcome"]) == (3, "failed after 3 attempts (last: refused address)")
    await notifier.close()
    assert calls == []
    assert sorted(set(resolved)) == ["hooks.partner.example", "partner.example"]  # literal addresses: never resolved


async def test_without_a_webhook_secret_nothing_is_sent_and_the_job_says_so(db):
    receiver = FakeReceiver()
    notifier = await a_notifier(db, receiver, webhook_secret=None)
    job = await a_job(db)
    written = RowsWritten(job_id=job, results=(
        RowResult(row=1, line=2, outcome=Outcome.CREATED, email="a@x.com", client_id="1"),))
    await (await notifier.announcements(await notifier.record([written]))).then()
    assert await callback_outcome(db, job) == "not sent: WEBHOOK_SECRET is not configured"
    loops = notifier.background()
    for coroutine in loops:
        coroutine.close()
    assert [c.__name__ for c in loops] == ["run_sweeper"]  # no delivery loop: it could sign nothing
    async with db.connect() as conn:
        assert await conn.scalar(select(webhook_deliveries.c.job_id).where(webhook_deliveries.c.job_id == job)) is None
    await notifier.close()
