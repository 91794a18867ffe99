"""The notifier: job and row events in, progress and one completion notification per job out."""

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from aiokafka import ConsumerRecord
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.db import reading
from shared.events import (
    ImportNotification,
    ImportProgress,
    Issue,
    JobAccepted,
    JobEvent,
    JobOverdue,
    JobRefused,
    JobRepeated,
    RowsRejected,
    RowsWritten,
)
from shared.kafka import Publication
from shared.metrics import JOBS, REQUEST_TO_NOTIFICATION, WEBHOOKS
from shared.readback import PublishedLog
from shared.settings import Settings
from shared.stage import Handled, Output, Publisher, Stage

from . import aggregate, ledger, outbox, webhook

__all__ = ["STAGE", "Notifier", "count_results"]

log = logging.getLogger("clients_import.notifier")
_DECODERS = {
    topics.JOBS: TypeAdapter(JobEvent).validate_json,
    topics.ROWS_REJECTED: RowsRejected.model_validate_json,
    topics.ROWS_WRITTEN: RowsWritten.model_validate_json,
}
NotifierInput = JobAccepted | JobRefused | JobRepeated | JobOverdue | RowsRejected | RowsWritten
NOT_SENT = "not sent: WEBHOOK_SECRET is not configured"
_POLL_S = 5.0  # the outbox is looked at at least this often (a stopped notifier may have left deliveries)
_MIN_WAIT_S = 0.05  # and at most this often while deliveries are due that another notifier holds


def decode(record: ConsumerRecord) -> NotifierInput:
    return _DECODERS[record.topic](record.value or b"")


async def count_results(events: list[NotifierInput], notifier: "Notifier") -> Handled:
    states = await notifier.record(events)
    return await notifier.announcements(states)


class Notifier:
    """The notifier's I/O: its database, the notifications topic read back, the webhook client, when
    each job's progress was last sent, and the webhook deliveries it is attempting right now (claimed
    from the outbox)."""

    def __init__(self, settings: Settings, engine: AsyncEngine, publish: Publisher, published: PublishedLog) -> None:
        self.settings, self.engine, self.publish, self.published = settings, engine, publish, published
        self.progress_sent: dict[str, float] = {}
        self.claimed: dict[str, outbox.Delivery] = {}
        self.webhooks = webhook.Sender.of(settings)
        self._due = asyncio.Event()  # a notification just added a delivery: look at the outbox now

    @classmethod
    def open(cls, settings: Settings, engine: AsyncEngine, publish: Publisher, published: PublishedLog) -> "Notifier":
        return cls(settings, engine, publish, published)

    async def record(self, events: list[NotifierInput]) -> list[ledger.JobState]:
        """Count the events in one transaction; the states of the jobs they touched. A job that had
        ended before and whose request came again is marked `repeat`: its notification is owed again,
        but the job is not counted again in the metrics."""
        job_events = [e for e in events if isinstance(e, JobAccepted | JobRefused | JobRepeated | JobOverdue)]
        rows = [e for e in events if isinstance(e, RowsRejected | RowsWritten)]
        async with self.engine.begin() as conn:
            touched = await ledger.record_jobs(conn, job_events) | await ledger.record_rows(conn, rows)
            # Jobs of records counted before are settled too: if the notification of one was published
            # but its `then` failed (not marked notified, no webhook delivery yet), the batch run again
            # announces it again and `then` gets another chance; a job already notified says nothing.
            touched |= {e.job_id for e in rows}
            states = await ledger.settle(conn, sorted(touched), datetime.now(UTC))
        repeated = {e.job_id for e in job_events if isinstance(e, JobRepeated)}
        return [replace(s, repeat=True) if s.job_id in repeated and not s.ended else s for s in states]

    async def announcements(self, states: list[ledger.JobState]) -> Handled:
        """Progress, then the notification of each job that just ended (or was asked for again) unless it
        is on the topic already; once they are published, the jobs are marked notified and their webhook
        deliveries go in the outbox, in one transaction (the delivery loop, `run_deliveries`, sends them)."""
        due = [s for s in states if s.notify]
        async with reading(self.engine).connect() as conn:
            notes = [await ledger.notification_for(conn, s, self.settings.first_errors) for s in due]
            callbacks = await ledger.callbacks(conn, [n.job_id for n in notes])
            received = await ledger.received(conn, [s.job_id for s in due if not s.repeat])
        on_topic = await self._already_published([n.job_id for n in notes])
        publications = [*self._progress(states), *(Publication(topics.NOTIFICATIONS, n, key=n.job_id)
                                                   for n in notes if n.job_id not in on_topic)]

        async def then() -> None:
            now = datetime.now(UTC)
            if notes:
                async with self.engine.begin() as conn:
                    await ledger.mark_notified(conn, [n.job_id for n in notes], now)
                    for note in notes:
                        if note.job_id not in callbacks:
                            continue
                        if self.settings.webhook_secret:
                            await outbox.enqueue(conn, note.job_id, callbacks[note.job_id], note.model_dump_json(), now)
                        else:
                            await ledger.record_callback(conn, note.job_id, NOT_SENT)
            for note in notes:
                self.progress_sent.pop(note.job_id, None)
                log.info(note.message, extra={"step": "job.notified", "job_id": note.job_id,
                                              "status": note.status.value})
                if note.job_id in received:  # once per job: not again for a repeated request
                    JOBS.labels(status=note.status.value).inc()
                    REQUEST_TO_NOTIFICATION.observe(max(0.0, (now - received[note.job_id]).total_seconds()))
            if callbacks:
                self._due.set()

        return Handled(publications, then)

    async def _already_published(self, job_ids: list[str]) -> set[str]:
        """Of these jobs, those whose notification is on the topic already: published by a notifier that
        stopped before it marked them notified. A job seen for the first time gets a note of where the
        topic ends now, committed before its notification is published, so any later attempt knows
        where to look."""
        if not job_ids:
            return set()
        async with reading(self.engine).connect() as conn:
            under_way = await ledger.notices_under_way(conn, job_ids)
        fresh = [j for j in job_ids if j not in under_way]
        if fresh:
            ends = await self.published.ends(topics.NOTIFICATIONS)
            async with self.engine.begin() as conn:
                await ledger.note_notices(conn, fresh, ends, datetime.now(UTC))
                noted = await ledger.notices_under_way(conn, fresh)
            # A note another notifier wrote a moment before ours is checked like an old one.
            under_way |= {j: e for j, e in noted.items() if e != ends}
        if not under_way:
            return set()
        since: dict[int, int] = {}  # the earliest noted end of each partition: one read covers every job
        for noted_ends in under_way.values():
            for partition, offset in noted_ends.items():
                since[partition] = min(since.get(partition, offset), offset)
        found = await self.published.keys_since(topics.NOTIFICATIONS, since, under_way)
        if found:
            log.warning("notifications already published", extra={"step": "job.notified", "job_ids": sorted(found)})
        return found

    async def sweep(self) -> None:
        """Find the jobs that outlived their deadline and say so on the jobs topic, keyed by job: the
        notifier consuming that partition fails and announces them, so a sweeper never races it into
        a second notification."""
        now = datetime.now(UTC)
        async with reading(self.engine).connect() as conn:
            late = await ledger.overdue(conn, now - timedelta(seconds=self.settings.job_deadline_s))
        if not late:
            return
        reason = Issue(
            code="deadline_exceeded",
            message=f"The import did not finish within {self.settings.job_deadline_s:.0f} seconds.",
        )
        await self.publish([Publication(topics.JOBS, JobOverdue(job_id=job_id, reason=reason), key=job_id)
                            for job_id in late])
        log.warning("jobs overdue", extra={"step": "job.overdue", "job_ids": late})

    async def run_deliveries(self) -> None:
        """The outbox's loop: attempt what is due, then wait until the next delivery is due, a new
        notification adds one, or `_POLL_S` passed (a notifier that stopped may have left some)."""
        while True:
            self._due.clear()
            try:
                wait = await self.deliver_due()
            except Exception:  # the loop must outlive a passing database error
                log.exception("webhook deliveries failed", extra={"step": "job.callback"})
                wait = _POLL_S
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._due.wait()

    async def deliver_due(self) -> float:
        """One pass: claim a batch of due deliveries (at most `outbox.BATCH`), attempt them side by side
        (each within WEBHOOK_TIMEOUT_S), record each result. Seconds until the loop should look again."""
        async with reading(self.engine).connect() as conn:
            earliest = await outbox.next_due(conn)
        now = datetime.now(UTC)
        if earliest is None or earliest > now:
            return _POLL_S if earliest is None else min(_POLL_S, max(_MIN_WAIT_S, (earliest - now).total_seconds()))
        lease = self.settings.webhook_timeout_s + outbox.LEASE_MARGIN_S
        async with self.engine.begin() as conn:
            claimed, closed = await outbox.claim(conn, now, outbox.BATCH, lease, self.settings.webhook_attempts)
        for job_id, outcome in closed:
            WEBHOOKS.labels(outcome="failed").inc()
            log.warning("callback", extra={"step": "job.callback", "job_id": job_id, "outcome": outcome})
        self.claimed.update((d.job_id, d) for d in claimed)
        results = await asyncio.gather(*(self._attempt(d) for d in claimed), return_exceptions=True)
        for delivery, error in zip(claimed, results, strict=True):
            if isinstance(error, Exception):  # its lease runs out, and it is attempted again
                log.error("could not record a webhook attempt", exc_info=error,
                          extra={"step": "job.callback", "job_id": delivery.job_id})
        return 0.0 if claimed or closed else _MIN_WAIT_S

    async def _attempt(self, delivery: outbox.Delivery) -> None:
        answer = await self.webhooks.send(delivery.url, delivery.delivery_id, delivery.body.encode())
        try:
            async with self.engine.begin() as conn:
                recorded = await outbox.record(conn, delivery, answer, datetime.now(UTC),
                                               self.settings.webhook_attempts, self.settings.webhook_backoff_s)
        finally:
            self.claimed.pop(delivery.job_id, None)
        if recorded is None:
            log.warning("webhook delivery taken over by another notifier",
                        extra={"step": "job.callback", "job_id": delivery.job_id, "attempt": delivery.attempt})
            return
        result, outcome = recorded
        WEBHOOKS.labels(outcome=result).inc()
        log.info("callback", extra={"step": "job.callback", "job_id": delivery.job_id, "outcome": outcome,
                                    "detail": answer.detail})  # what the receiver said: for the operator only

    def background(self) -> list:
        """The deadline sweeper, and the webhook outbox's delivery loop (none without WEBHOOK_SECRET:
        nothing can be signed, so pending deliveries wait for a notifier that has it)."""
        return [self.run_sweeper(), *([self.run_deliveries()] if self.settings.webhook_secret else [])]

    async def run_sweeper(self) -> None:
        interval = max(0.5, min(self.settings.job_deadline_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive a passing database or broker error
                log.exception("sweep failed", extra={"step": "job.sweep"})

    async def close(self) -> None:
        """After the background loops are stopped: deliveries whose attempt was cut short are handed back
        to the outbox, due at once for the next notifier (their attempt stays counted)."""
        if self.claimed:
            try:
                async with asyncio.timeout(5), self.engine.begin() as conn:
                    await outbox.release(conn, list(self.claimed.values()), datetime.now(UTC))
            except Exception:  # they are attempted again anyway once their lease runs out
                log.warning("could not hand back webhook deliveries", exc_info=True,
                            extra={"step": "job.callback", "job_ids": sorted(self.claimed)})
            self.claimed.clear()
        await self.webhooks.aclose()
        await self.published.close()

    def _progress(self, states: list[ledger.JobState]) -> list[Publication]:
        out = []
        clock = time.monotonic()
        for state in states:
            final = state.status.is_final
            if (final and not state.notify) or not aggregate.progress_due(
                self.progress_sent.get(state.job_id), clock, self.settings.progress_interval_s, final
            ):
                continue
            self.progress_sent[state.job_id] = clock
            event = ImportProgress(
                job_id=state.job_id, status=state.status, processed=state.counts.processed, total=state.counts.total
            )
            out.append(Publication(topics.PROGRESS, event, key=state.job_id))
        return out


STAGE = Stage(
    name="notifier",
    description="Counts every row of every job once and announces the outcome.",
    consumes=(topics.JOBS, topics.ROWS_REJECTED, topics.ROWS_WRITTEN),
    publishes=(
        Output(topics.PROGRESS, ImportProgress, "progress",
               "Rows processed of total per job, a few times a second, and once at the end."),
        Output(topics.NOTIFICATIONS, ImportNotification, "notifications", "The one completion notification of each job."),
    ),
    decode=decode,
    handle=count_results,
    ports=Notifier.open,
    reads_back=(topics.NOTIFICATIONS,),
)
