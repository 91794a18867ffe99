"""The four services composed in one process, on one broker connection: for `run`, `serve` and tests."""

import logging

from faststream.kafka import KafkaBroker
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from services.notifier import app as notifier
from services.uploader import app as uploader
from services.validator import app as validator
from services.writer import app as writer
from shared.db import create_engine, create_tables
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
        self.engine = engine
        self.broker: KafkaBroker | None = None

    async def start(self) -> "Pipeline":
        self.engine = self.engine or create_engine(self.settings.database_url)
        await create_tables(self.engine)
        await ensure_topics(self.settings)
        self.broker = build_broker(self.settings)
        self.register(self.broker)
        await self.broker.start()
        log.info("services started", extra={"step": "services.started", "services": list(self.services)})
        return self

    def register(self, broker: KafkaBroker) -> None:
        if "uploader" in self.services:
            uploader.register(broker, self.settings, self.job_status)
        if "validator" in self.services:
            validator.register(broker, self.settings)
        if "writer" in self.services:
            writer.register(broker, self.settings, self.engine)
        if "notifier" in self.services:
            notifier.register(broker, self.settings, self.engine)

    async def job_status(self, job_id: str) -> JobStatus | None:
        async with self.engine.connect() as conn:
            status = await conn.scalar(select(import_jobs.c.status).where(import_jobs.c.id == job_id))
        return JobStatus(status) if status else None

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    async def __aenter__(self) -> "Pipeline":
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()
