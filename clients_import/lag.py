"""Consumer lag, sampled: how many records each stage's consumer group still has to read, per partition.

Every `LAG_INTERVAL_S` the sampler reads, for each consumer group of the stages in this process, the
committed offsets (`AIOKafkaAdminClient.list_consumer_group_offsets`) and each consumed partition's
first and end offsets (a group-less `AIOKafkaConsumer`), and sets `CONSUMER_LAG{group,topic,partition}`
to end − committed (end − first where the group has committed nothing yet: it will read from the
beginning). A sample takes at most `SAMPLE_TIMEOUT_S`; while the broker is away the gauges keep their
last values and the sampler tries again next time (/readyz says the broker is away). Lag is the group's,
not the process's: two writer processes report the same series.
"""

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import client_options
from shared.metrics import CONSUMER_LAG
from shared.settings import Settings

__all__ = ["LAG_INTERVAL_S", "LagSampler", "lag_of"]

log = logging.getLogger("clients_import.lag")

LAG_INTERVAL_S = 5.0
SAMPLE_TIMEOUT_S = 10.0
_REQUEST_TIMEOUT_MS = 5_000


def lag_of(committed: int | None, first: int, end: int) -> int:
    """Records a group has yet to read on a partition: from its committed offset (or the partition's first
    offset when it has none, or when retention removed what it had not read) to the end."""
    start = first if committed is None or committed < 0 else max(committed, first)
    return max(0, end - start)


class LagSampler:
    """`run()` samples until cancelled; `close()` releases its connections."""

    def __init__(self, settings: Settings, groups: Mapping[str, tuple[str, ...]],
                 interval_s: float = LAG_INTERVAL_S) -> None:
        self.settings, self.groups, self.interval_s = settings, dict(groups), interval_s
        self._admin: AIOKafkaAdminClient | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._failing = False

    async def run(self) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(SAMPLE_TIMEOUT_S):
                        await self.sample()
                    if self._failing:
                        log.info("consumer lag sampled again", extra={"step": "lag.recovered"})
                    self._failing = False
                except Exception as error:
                    if not self._failing:  # once per outage, not every few seconds
                        log.warning("could not sample consumer lag", extra={"step": "lag.failed",
                                                                            "reason": f"{type(error).__name__}: {error}"[:300]})
                    self._failing = True
                    await self.close()  # start afresh next time
                await asyncio.sleep(self.interval_s)
        finally:
            await self.close()

    async def sample(self) -> dict[tuple[str, str, int], int]:
        """Set the gauge for every group and partition, and hand back what it was set to."""
        admin, consumer = await self._clients()
        wanted = sorted({topic for consumed in self.groups.values() for topic in consumed})
        partitions = {
            t["topic"]: sorted(p["partition"] for p in t["partitions"])
            for t in await admin.describe_topics(wanted)
            if not t["error_code"]
        }
        tps = [TopicPartition(topic, p) for topic, numbers in partitions.items() for p in numbers]
        if not tps:
            return {}
        first = await consumer.beginning_offsets(tps)
        end = await consumer.end_offsets(tps)
        lags: dict[tuple[str, str, int], int] = {}
        for group, consumed in self.groups.items():
            own = [tp for tp in tps if tp.topic in consumed]
            if not own:
                continue
            committed = await admin.list_consumer_group_offsets(group, partitions=own)
            for tp in own:
                offset = committed.get(tp)
                lag = lag_of(offset.offset if offset is not None else None, first[tp], end[tp])
                CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(lag)
                lags[(group, tp.topic, tp.partition)] = lag
        return lags

    async def _clients(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        if self._admin is None or self._consumer is None:
            await self.close()
            admin = AIOKafkaAdminClient(**client_options(self.settings), request_timeout_ms=_REQUEST_TIMEOUT_MS)
            consumer = AIOKafkaConsumer(**client_options(self.settings), group_id=None, enable_auto_commit=False,
                                        request_timeout_ms=_REQUEST_TIMEOUT_MS)
            self._admin, self._consumer = admin, consumer
            await admin.start()
            await consumer.start()
        return self._admin, self._consumer

    async def close(self) -> None:
        admin, consumer = self._admin, self._consumer
        self._admin = self._consumer = None
        for client, closing in ((consumer, "stop"), (admin, "close")):
            if client is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(5):
                        await getattr(client, closing)()
