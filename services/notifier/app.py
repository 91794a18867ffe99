"""The notifier: job and row events in, progress and one completion notification per job out."""

import logging
import time
from datetime import UTC, datetime

from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaMessage
from pydantic import TypeAdapter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.events import (
    ImportNotification,
    ImportProgress,
    JobAccepted,
    JobEvent,
    JobRefused,
    JobRepeated,
    RowsRejected,
    RowsWritten,
)
from shared.kafka import Publication, build_broker, consumer_options, dead_letters, decoder_for, publish_all, send_to_dlq
from shared.settings import Settings

from . import aggregate, ledger

log = logging.getLogger("clients_import.notifier")
_DECODERS = {
    topics.JOBS: TypeAdapter(JobEvent).validate_json,
    topics.ROWS_REJECTED: RowsRejected.model_validate_json,
    topics.ROWS_WRITTEN: RowsWritten.model_validate_json,
}
NotifierInput = JobAccepted | JobRefused | JobRepeated | RowsRejected | RowsWritten


def _by_topic(record) -> NotifierInput:
    return _DECODERS[record.topic](record.value or b"")


class Notifier:
    def __init__(self, broker: KafkaBroker, settings: Settings, engine: AsyncEngine) -> None:
        self.broker, self.settings, self.engine = broker, settings, engine
        self.progress_sent: dict[str, float] = {}

    async def handle(self, events: list[NotifierInput], bad: list) -> None:
        await send_to_dlq(self.broker, bad)
        jobs = [e for e in events if isinstance(e, JobAccepted | JobRefused | JobRepeated)]
        rows = [e for e in events if isinstance(e, RowsRejected | RowsWritten)]
        now = datetime.now(UTC)
        async with self.engine.begin() as conn:
            touched = await ledger.record_jobs(conn, jobs) | await ledger.record_rows(conn, rows)
            states = await ledger.settle(conn, sorted(touched), now)
            notes = [await ledger.notification_for(conn, s, self.settings.first_errors) for s in states if s.notify]
        await publish_all(self.broker, [*self._progress(states), *(
            Publication(topics.NOTIFICATIONS, note, key=note.job_id) for note in notes
        )])
        if notes:
            async with self.engine.begin() as conn:
                await ledger.mark_notified(conn, [n.job_id for n in notes], datetime.now(UTC))
        for note in notes:
            self.progress_sent.pop(note.job_id, None)
            log.info(note.message, extra={"step": "job.notified", "job_id": note.job_id, "status": note.status.value})

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


def register(broker: KafkaBroker, settings: Settings, engine: AsyncEngine) -> Notifier:
    notifier = Notifier(broker, settings, engine)
    broker.publisher(topics.PROGRESS, schema=ImportProgress, title="progress",
                     description="Rows processed of total per job, a few times a second, and once at the end.")
    broker.publisher(topics.NOTIFICATIONS, schema=ImportNotification, title="notifications",
                     description="The one completion notification of each job.")

    @broker.subscriber(topics.JOBS, topics.ROWS_REJECTED, topics.ROWS_WRITTEN, **consumer_options(settings, "notifier"),
                       decoder=decoder_for(_by_topic, "notifier"),
                       title="notifier", description="Counts every row of every job once and announces the outcome.")
    async def count_results(events: list[NotifierInput], message: KafkaMessage) -> None:
        await notifier.handle(events, dead_letters(message))

    return notifier


def build_app(settings: Settings, engine: AsyncEngine) -> FastStream:
    broker = build_broker(settings)
    register(broker, settings, engine)
    return FastStream(broker)
