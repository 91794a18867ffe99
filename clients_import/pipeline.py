"""The services composed in one process, on one broker connection: for `run`, `serve` and tests."""

import asyncio
import contextlib
import logging

from faststream.kafka import KafkaBroker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import app as notifier
from services.uploader import app as uploader
from services.validator import app as validator
from services.writer import app as writer
from shared import topics
from shared.db import create_engine, create_tables, reading
from shared.events import JobStatus
from shared.kafka import build_broker, ensure_topics
from shared.settings import Settings
from shared.tables import import_jobs

SERVICES = ("uploader", "validator", "writer", "notifier")
log = logging.getLogger("clients_import.pipeline")


class Pipeline:
    def __init__(self, settings: Settings, services: tuple[str, ...] = SERVICES, engine: AsyncEngine | None = None):
        unknown = set(services) - set(SERVICES)
        if unknown:
            raise ValueError(f"unknown service(s) {', '.join(sorted(unknown))}: choose from {', '.join(SERVICES)}")
        self.settings = settings
        self.services = services
        self.engine = engine or create_engine(settings.database_url)  # connects on first use only
        self.broker: KafkaBroker | None = None
        self.notifier: notifier.Notifier | None = None
        self._background: list[asyncio.Task] = []

    async def start(self) -> "Pipeline":
        await self.prepare()
        self.register(build_broker(self.settings))
        await self.broker.start()
        self.start_background()
        return self

    async def prepare(self) -> None:
        await create_tables(self.engine)
        await ensure_topics(self.settings)

    def register(self, broker: KafkaBroker) -> None:
        self.broker = broker
        broker.publisher(topics.DLQ, title="dlq", description=(
            "Any record a service could not read, unchanged. Headers: dlq.original.topic, dlq.original.partition, "
            "dlq.original.offset, dlq.stage, dlq.reason."))
        if "uploader" in self.services:
            uploader.register(broker, self.settings, self.job_status)
        if "validator" in self.services:
            validator.register(broker, self.settings)
        if "writer" in self.services:
            writer.register(broker, self.settings, self.engine)
        if "notifier" in self.services:
            self.notifier = notifier.register(broker, self.settings, self.engine)

    def start_background(self) -> None:
        if self.notifier:
            self._background.append(asyncio.create_task(self.notifier.run_sweeper()))
        log.info("services started", extra={"step": "services.started", "services": list(self.services)})

    async def stop_background(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self.notifier:
            await self.notifier.close()

    async def job_status(self, job_id: str) -> JobStatus | None:
        async with reading(self.engine).connect() as conn:
            status = await conn.scalar(select(import_jobs.c.status).where(import_jobs.c.id == job_id))
        return JobStatus(status) if status else None

    async def stop(self) -> None:
        await self.stop_background()
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app):
        """The services run for as long as the HTTP API does."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def __aenter__(self) -> "Pipeline":
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
