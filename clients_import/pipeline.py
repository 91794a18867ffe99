"""The runners: the topology's stages on one broker connection, real or in memory.

`Pipeline(settings)` runs the named stages on the configured Kafka; `Pipeline(..., in_memory=True)`
runs the same stages, with the same handlers and the same `StageRunner`, on FastStream's in-memory
broker (`TestKafkaBroker`), where a publication reaches its consumers at once. Both are used by the
same tests; `clients-import run` and `serve` use the real one.

With `METRICS_PORT` set (0: a free loopback port, logged), a pipeline also serves /metrics, /healthz and
/readyz (`clients_import.metrics_server`; the bound port is `pipeline.metrics_port`) and, on a real
broker, samples its stages' consumer lag every few seconds (`clients_import.lag`). One pipeline per
process, so one port and one registry for every service the process runs, labelled by stage.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import UTC, datetime

from faststream.kafka import KafkaBroker, KafkaMessage, TestKafkaBroker
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.db import create_engine, create_tables, insert_for, reading
from shared.events import ImportRequest
from shared.kafka import (
    DeadLetter,
    Publication,
    access_problem,
    build_broker,
    consumer_options,
    ensure_topics,
    publish_all,
    records_of,
    send_to_dlq,
)
from shared.readback import KafkaPublishedLog, MemoryPublishedLog
from shared.settings import Settings
from shared.stage import Stage, StageRunner
from shared.tables import health_probe

from . import collector
from .lag import LagSampler
from .metrics_server import MetricsServer
from .topology import STAGE_NAMES, stages

__all__ = ["Pipeline"]

log = logging.getLogger("clients_import.pipeline")
_IN_MEMORY = "in-memory:9092"
_CHECK_TIMEOUT_S = 5.0  # each of the database and the broker
_WHY_TIMEOUT_S = 0.8  # after a failed broker check, to tell a refusal from silence (within /readyz's own bound)


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
        self._metrics: MetricsServer | None = None
        self.metrics_port: int | None = None  # where /metrics, /healthz and /readyz answer, once started
        self._phase: str | None = "starting"  # why the process is not ready, apart from its dependencies

    async def start(self) -> "Pipeline":
        await self._start_metrics()  # first: /healthz answers and /readyz says "starting" while we start
        try:
            await create_tables(self.engine)
            if not self.in_memory:
                await ensure_topics(self.settings)
            broker = self.register(build_broker(self.settings))
            if self.in_memory:
                self._memory = TestKafkaBroker(broker)
                await self._memory.__aenter__()
            else:
                await broker.start()
        except BaseException:
            await self._stop_metrics()
            raise
        for ports in self.ports.values():
            self._background += [asyncio.create_task(job) for job in getattr(ports, "background", list)()]
        if self._metrics is not None and not self.in_memory and self.stages:
            lag = LagSampler(self.settings, {self.settings.group(s.name): s.consumes for s in self.stages})
            self._background.append(asyncio.create_task(lag.run()))
        self._phase = None
        log.info("services started", extra={"step": "services.started", "services": list(self.services)})
        return self

    async def _start_metrics(self) -> None:
        if self.settings.metrics_port is None or self._metrics is not None:
            return
        self._metrics = MetricsServer(self.readiness, self.settings.metrics_host, self.settings.metrics_port)
        self.metrics_port = await self._metrics.start()
        url = f"http://{self.settings.metrics_host}:{self.metrics_port}"
        log.info("metrics server listening", extra={"step": "metrics.listening", "url": f"{url}/metrics",
                                                    "port": self.metrics_port, "services": list(self.services)})

    async def _stop_metrics(self) -> None:
        if self._metrics is not None:
            await self._metrics.stop()
            self._metrics = None

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
        ports = stage.ports(self.settings, self.engine, self.publish, **self._read_back(stage))
        runner = StageRunner(stage, ports, self.publish, self.dead_letter, self.healthy)
        self.ports[stage.name], self.runners[stage.name] = ports, runner

        async def consume(message: KafkaMessage) -> None:
            with collector.batch():  # no collection walks the batch while it lives (collector.py)
                await runner.run(records_of(message))

        consume.__name__ = stage.handle.__name__  # names the operation in the AsyncAPI document
        options = self._consumer_options(stage)
        broker.subscriber(*stage.consumes, **options, decoder=_no_body, title=stage.name,
                          description=stage.description)(consume)

    def _read_back(self, stage: Stage) -> dict:
        if not stage.reads_back:
            return {}
        return {"published": MemoryPublishedLog(self.seen) if self.in_memory else KafkaPublishedLog(self.settings)}

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
        """The stages' dependencies answer, the database to a write (a locked or full one does not)."""
        return await self._unhealthy() is None and await self._writable()

    async def _writable(self) -> bool:
        sqlite = self.engine.dialect.name == "sqlite"
        try:
            # Begun deferred, so that on SQLite the wait for the write lock is this probe's own, short one.
            async with asyncio.timeout(_CHECK_TIMEOUT_S + 1), reading(self.engine).connect() as conn:
                if sqlite:
                    await conn.exec_driver_sql(f"PRAGMA busy_timeout={int(_CHECK_TIMEOUT_S * 1000)}")
                try:
                    insert = insert_for(conn.dialect.name, health_probe)
                    await conn.execute(insert.values(id=1, at=datetime.now(UTC)).on_conflict_do_update(
                        index_elements=[health_probe.c.id], set_={"at": insert.excluded.at}))
                    await conn.commit()
                finally:
                    if sqlite:
                        await conn.rollback()
                        await conn.exec_driver_sql("PRAGMA busy_timeout=60000")
        except Exception:
            return False
        return True

    async def readiness(self) -> str | None:
        """None when the process is started and its dependencies answer; else why not (for /readyz)."""
        return self._phase or await self._unhealthy()

    async def _unhealthy(self) -> str | None:
        try:
            async with asyncio.timeout(_CHECK_TIMEOUT_S):
                async with reading(self.engine).connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as error:  # the type only: a driver's message may name hosts or users
            return f"the database does not answer ({type(error).__name__})"
        if self.in_memory:
            return None
        if self.broker is None or not await self.broker.ping(timeout=_CHECK_TIMEOUT_S):
            # Why, when Kafka answers but refuses us (a password changed, a certificate expired): one more short try.
            problem = await access_problem(self.settings, _WHY_TIMEOUT_S)
            return problem.reason if problem else "the Kafka broker does not answer"
        return None

    async def stop(self) -> None:
        self._phase = "stopping"
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
        await self._stop_metrics()

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
