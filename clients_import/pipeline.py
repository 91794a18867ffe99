"""The runners: the topology's stages on one broker connection, real or in memory.

`Pipeline(settings)` runs the named stages on the configured Kafka; `Pipeline(..., in_memory=True)`
runs the same stages, with the same handlers and the same `StageRunner`, on FastStream's in-memory
broker (`TestKafkaBroker`), where a publication reaches its consumers at once. Both are used by the
same tests; `clients-import run` and `serve` use the real one.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.db import create_engine, create_tables, reading
from shared.events import ImportRequest
from shared.kafka import (
    DeadLetter,
    Publication,
    build_broker,
    consumer_options,
    ensure_topics,
    publish_all,
    records_of,
    send_to_dlq,
)
from shared.settings import Settings
from shared.stage import Stage, StageRunner

from .topology import STAGE_NAMES, stages

__all__ = ["Pipeline"]

log = logging.getLogger("clients_import.pipeline")
_IN_MEMORY = "in-memory:9092"


class Pipeline:
    def __init__(
        self, settings: Settings, services: tuple[str, ...] = STAGE_NAMES, engine: AsyncEngine | None = None,
        in_memory: bool = False,
    ):
        self.stages = stages(tuple(s for s in services if s != "api"))
        if in_memory and not settings.kafka_bootstrap_servers:
            settings = settings.model_copy(update={"kafka_bootstrap_servers": _IN_MEMORY})
        self.settings = settings
        self.services = tuple(stage.name for stage in self.stages)
        self.in_memory = in_memory
        self.engine = engine or create_engine(settings.database_url)  # connects on first use only
        self.broker: KafkaBroker | None = None
        self.runners: dict[str, StageRunner] = {}
        self.ports: dict[str, object] = {}
        self.seen: dict[str, list] = {topic: [] for topic in topics.ALL}  # in memory: every record published
        self._background: list[asyncio.Task] = []
        self._memory: TestKafkaBroker | None = None

    async def start(self) -> "Pipeline":
        await create_tables(self.engine)
        if not self.in_memory:
            await ensure_topics(self.settings)
        broker = self.register(build_broker(self.settings))
        if self.in_memory:
            self._memory = TestKafkaBroker(broker)
            await self._memory.__aenter__()
        else:
            await broker.start()
        for ports in self.ports.values():
            self._background += [asyncio.create_task(job) for job in getattr(ports, "background", list)()]
        log.info("services started", extra={"step": "services.started", "services": list(self.services)})
        return self

    def register(self, broker: KafkaBroker) -> KafkaBroker:
        """Declare every stage on the broker: its publishers (for the contract) and its consumer."""
        self.broker = broker
        broker.publisher(topics.REQUESTS, schema=ImportRequest, title="requests", description=(
            "Start an import: published by partners, by our HTTP API and by our CLI."))
        broker.publisher(topics.DLQ, title="dlq", description=(
            "Any record a stage could not process, unchanged (or a bounded excerpt when it is too large). Headers: "
            "dlq.original.topic, dlq.original.partition, dlq.original.offset, dlq.original.size, dlq.stage, "
            "dlq.reason; dlq.excerpt and dlq.original.sha256 for an excerpt."))
        for stage in self.stages:
            self._register_stage(broker, stage)
        if self.in_memory:
            self._register_sink(broker)
        return broker

    def _register_stage(self, broker: KafkaBroker, stage: Stage) -> None:
        for output in stage.publishes:
            broker.publisher(output.topic, schema=output.schema, title=output.title, description=output.description)
        ports = stage.ports(self.settings, self.engine, self.publish)
        runner = StageRunner(stage, ports, self.publish, self.dead_letter, self.healthy)
        self.ports[stage.name], self.runners[stage.name] = ports, runner

        async def consume(message: KafkaMessage) -> None:
            await runner.run(records_of(message))

        consume.__name__ = stage.handle.__name__  # names the operation in the AsyncAPI document
        options = self._consumer_options(stage)
        broker.subscriber(*stage.consumes, **options, decoder=_no_body, title=stage.name,
                          description=stage.description)(consume)

    def _consumer_options(self, stage: Stage) -> dict:
        options = consumer_options(self.settings, stage.name)
        if stage.max_records:
            options["max_records"] = stage.max_records
        return options

    def _register_sink(self, broker: KafkaBroker) -> None:
        """In memory, every record published is kept for the tests to read."""
        for topic, kept in self.seen.items():
            broker.subscriber(topic, group_id="in-memory-sink", batch=True, decoder=_no_body,
                              include_in_schema=False)(_keeper(kept))

    async def publish(self, publications: Sequence[Publication]) -> None:
        await publish_all(self.broker, publications)

    async def dead_letter(self, letters: Sequence[DeadLetter]) -> None:
        await send_to_dlq(self.broker, letters, self.settings.request_max_bytes)

    async def healthy(self) -> bool:
        """The stages' dependencies answer: the database, and the broker."""
        try:
            async with reading(self.engine).connect() as conn:
                await conn.execute(text("SELECT 1"))
        except Exception:
            return False
        return self.in_memory or await self.broker.ping(timeout=5)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._background.clear()
        if self._memory is not None:
            await self._memory.__aexit__(None, None, None)
            self._memory = None
        elif self.broker is not None:
            await self.broker.stop()
        self.broker = None
        for ports in self.ports.values():
            if hasattr(ports, "close"):
                await ports.close()

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


def _keeper(kept: list):
    async def keep(message: KafkaMessage) -> None:
        kept.extend(records_of(message))

    return keep


async def _no_body(_message) -> None:
    """The stage runner decodes each record itself, so that a bad one is dead-lettered, not fatal."""
    return None
