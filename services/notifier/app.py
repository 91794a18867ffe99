"""The notifier: job and row events in, progress and one completion notification per job out."""

import asyncio
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
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
    JobRefused,
    JobRepeated,
    RowsRejected,
    RowsWritten,
)
from shared.kafka import Publication
from shared.settings import Settings
from shared.stage import Handled, Output, Publisher, Stage

from . import aggregate, ledger, webhook

__all__ = ["STAGE", "Notifier", "count_results"]

log = logging.getLogger("clients_import.notifier")
_DECODERS = {
    topics.JOBS: TypeAdapter(JobEvent).validate_json,
    topics.ROWS_REJECTED: RowsRejected.model_validate_json,
    topics.ROWS_WRITTEN: RowsWritten.model_validate_json,
}
NotifierInput = JobAccepted | JobRefused | JobRepeated | RowsRejected | RowsWritten


def decode(record: ConsumerRecord) -> NotifierInput:
    return _DECODERS[record.topic](record.value or b"")


async def count_results(events: list[NotifierInput], notifier: "Notifier") -> Handled:
    states = await notifier.record(events)
    return await notifier.announcements(states)


class Notifier:
    """The notifier's I/O: its database, the webhook client, and when each job's progress was last sent."""

    def __init__(self, settings: Settings, engine: AsyncEngine, publish: Publisher) -> None:
        self.settings, self.engine, self.publish = settings, engine, publish
        self.progress_sent: dict[str, float] = {}
        self.deliveries: set[asyncio.Task] = set()
        self.http = httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False)

    @classmethod
    def open(cls, settings: Settings, engine: AsyncEngine, publish: Publisher) -> "Notifier":
        return cls(settings, engine, publish)

    async def record(self, events: list[NotifierInput]) -> list[ledger.JobState]:
        """Count the events in one transaction; the states of the jobs they touched."""
        job_events = [e for e in events if isinstance(e, JobAccepted | JobRefused | JobRepeated)]
        rows = [e for e in events if isinstance(e, RowsRejected | RowsWritten)]
        async with self.engine.begin() as conn:
            touched = await ledger.record_jobs(conn, job_events) | await ledger.record_rows(conn, rows)
            return await ledger.settle(conn, sorted(touched), datetime.now(UTC))

    async def announcements(self, states: list[ledger.JobState]) -> Handled:
        """Progress, then the notification of each job that just ended (or was asked for again); once
        they are published, the jobs are marked notified and their callbacks start."""
        due = [s for s in states if s.notify]
        async with reading(self.engine).connect() as conn:
            notes = [await ledger.notification_for(conn, s, self.settings.first_errors) for s in due]
            callbacks = await ledger.callbacks(conn, [n.job_id for n in notes])
        publications = [*self._progress(states), *(Publication(topics.NOTIFICATIONS, n, key=n.job_id) for n in notes)]

        async def then() -> None:
            if notes:
                async with self.engine.begin() as conn:
                    await ledger.mark_notified(conn, [n.job_id for n in notes], datetime.now(UTC))
            for note in notes:
                self.progress_sent.pop(note.job_id, None)
                log.info(note.message, extra={"step": "job.notified", "job_id": note.job_id,
                                              "status": note.status.value})
                if note.job_id in callbacks:
                    self._start_delivery(note, callbacks[note.job_id])

        return Handled(publications, then)

    async def sweep(self) -> None:
        """Fail the jobs that outlived their deadline, so none runs forever."""
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            late = await ledger.overdue(conn, now - timedelta(seconds=self.settings.job_deadline_s))
            if not late:
                return
            reason = Issue(
                code="deadline_exceeded",
                message=f"The import did not finish within {self.settings.job_deadline_s:.0f} seconds.",
            )
            await ledger.fail(conn, late, reason, now)
            states = await ledger.settle(conn, late, now)
        log.warning("jobs failed", extra={"step": "job.failed", "job_ids": late})
        handled = await self.announcements(states)
        await self.publish(handled.publications)
        await handled.then()

    def _start_delivery(self, note: ImportNotification, url: str) -> None:
        task = asyncio.create_task(self._deliver(note, url))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    async def _deliver(self, note: ImportNotification, url: str) -> None:
        if not self.settings.webhook_secret:
            outcome = "not sent: WEBHOOK_SECRET is not configured"
        else:
            outcome = await webhook.deliver(
                self.http, url, note.model_dump_json().encode(), self.settings.webhook_secret,
                self.settings.webhook_attempts, self.settings.webhook_backoff_s,
            )
        async with self.engine.begin() as conn:
            await ledger.record_callback(conn, note.job_id, outcome)
        log.info("callback", extra={"step": "job.callback", "job_id": note.job_id, "outcome": outcome})

    def background(self) -> list:
        return [self.run_sweeper()]

    async def run_sweeper(self) -> None:
        interval = max(0.5, min(self.settings.job_deadline_s / 4, 5.0))
        while True:
            await asyncio.sleep(interval)
            try:
                await self.sweep()
            except Exception:  # the sweeper must outlive a passing database or broker error
                log.exception("sweep failed", extra={"step": "job.sweep"})

    async def close(self) -> None:
        for task in list(self.deliveries):
            task.cancel()
        await self.http.aclose()

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
)
