"""Reading back what a stage published: where a topic ends now, and which keys it holds since then.

A publication and the database row recording it cannot be one transaction. A stage that must publish
something once (the notifier's one notification per job) notes where the topic ended before it
publishes; when it finds the publication unrecorded later (it died between publishing and recording),
it reads the topic from that note and publishes again only what is not there.
"""

import asyncio
from collections.abc import Iterable
from typing import Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition

from .kafka import client_options, start_client
from .settings import Settings

__all__ = ["TopicEnds", "PublishedLog", "KafkaPublishedLog", "MemoryPublishedLog", "READ_TIMEOUT_S"]

TopicEnds = dict[int, int]  # partition -> the offset the next record will get
READ_TIMEOUT_S = 30.0  # a read-back slower than this fails the batch, which is tried again


class PublishedLog(Protocol):
    async def ends(self, topic: str) -> TopicEnds: ...

    async def keys_since(self, topic: str, since: TopicEnds, keys: Iterable[str]) -> set[str]:
        """Which of `keys` are keys of records published on `topic` at or after `since`."""
        ...

    async def close(self) -> None: ...


class KafkaPublishedLog:
    """Reads the broker with a consumer of its own, outside any group, started on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None

    async def ends(self, topic: str) -> TopicEnds:
        async with asyncio.timeout(READ_TIMEOUT_S):
            consumer = await self._open()
            partitions = await self._partitions(consumer, topic)
            ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}

    async def keys_since(self, topic: str, since: TopicEnds, keys: Iterable[str]) -> set[str]:
        wanted = {key.encode() for key in keys}
        found: set[str] = set()
        async with asyncio.timeout(READ_TIMEOUT_S):
            consumer = await self._open()
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in since])
            todo = {tp: end for tp, end in ends.items() if end > since[tp.partition]}
            consumer.assign(list(todo))
            for tp in todo:
                consumer.seek(tp, since[tp.partition])
            while todo and wanted - {k.encode() for k in found}:
                batches = await consumer.getmany(*todo, timeout_ms=1000)
                for tp, records in batches.items():
                    found.update(r.key.decode() for r in records if r.key in wanted and r.offset < todo[tp])
                for tp in [tp for tp in todo if await consumer.position(tp) >= todo[tp]]:
                    del todo[tp]
            consumer.assign([])
        return found

    async def close(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _open(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **client_options(self.settings), group_id=None, enable_auto_commit=False,
                auto_offset_reset="earliest", max_partition_fetch_bytes=self.settings.request_max_bytes,
            )
            self._consumer = await start_client(consumer, self.settings)
        return self._consumer

    @staticmethod
    async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
            partitions = consumer.partitions_for_topic(topic) or set()
        if not partitions:
            raise LookupError(f"the topic {topic} has no partitions the broker knows of")
        return [TopicPartition(topic, p) for p in sorted(partitions)]


class MemoryPublishedLog:
    """The same answers from records kept in memory (the in-memory runner's `seen`, a test's list):
    each topic's list is its one partition, a record's index its offset."""

    def __init__(self, records: dict[str, list]) -> None:
        self.records = records

    async def ends(self, topic: str) -> TopicEnds:
        return {0: len(self.records.get(topic, ()))}

    async def keys_since(self, topic: str, since: TopicEnds, keys: Iterable[str]) -> set[str]:
        wanted = {key.encode() for key in keys}
        return {r.key.decode() for r in self.records.get(topic, [])[since.get(0, 0):] if r.key in wanted}

    async def close(self) -> None:
        return None
