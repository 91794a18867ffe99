"""Reading topics and consumer groups the way an operator would, with a plain Kafka client."""

import asyncio
import json
import subprocess
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from clients_import.topology import STAGES
from shared.kafka import ensure_topics
from shared.settings import Settings

# Which topics each stage's consumer group reads: the topology says.
GROUPS = {stage.name: stage.consumes for stage in STAGES}


async def read_topic(settings: Settings, topic: str, timeout: float = 5.0):
    """Every record on a topic, from the beginning to its current end."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in await _partitions(consumer, topic)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records = []
        deadline = time.monotonic() + timeout
        while await _behind(consumer, ends) and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def produce_raw(settings: Settings, topic: str, partition: int, key: bytes, value: bytes, headers: list[bytes],
                compression: str | None = None) -> int:
    """One record sent as a producer that writes raw bytes sends it (librdkafka's kcat): a header is
    `name=value`, or `name` alone for a null value, and neither need be UTF-8; compressed with any codec
    Kafka has (gzip, snappy, lz4, zstd) when asked. Its offset."""
    bootstrap = settings.kafka_bootstrap_servers.encode()
    command = [b"kcat", b"-b", bootstrap, b"-t", topic.encode(), b"-p", str(partition).encode()]
    produce = [*command, b"-P", b"-K", b"\t", *(arg for header in headers for arg in (b"-H", header)),
               *((b"-z", compression.encode()) if compression else ())]
    subprocess.run(produce, input=key + b"\t" + value + b"\n", check=True, timeout=30, capture_output=True)
    listed = subprocess.run([*command, b"-C", b"-o", b"-50", b"-e", b"-q", b"-f", b"%o %k\\n"],
                            check=True, timeout=30, capture_output=True).stdout
    offsets = [int(line.split(b" ", 1)[0]) for line in listed.splitlines() if line.endswith(b" " + key)]
    assert len(offsets) == 1, f"kcat sent {key!r} {len(offsets)} times: {listed[-2000:]!r}"
    return offsets[0]


async def _behind(consumer: AIOKafkaConsumer, ends: dict) -> bool:
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return True
    return False


def of_job(records, job_id: str):
    return [r for r in records if _job_of(r.value) == job_id]


def _job_of(value: bytes):
    try:
        return json.loads(value).get("job_id")
    except Exception:  # the poison suite leaves records no JSON parser can read (too deep, not JSON)
        return None


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    found = consumer.partitions_for_topic(topic)
    while not found:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        found = consumer.partitions_for_topic(topic)
    return found


async def wait_until_drained(settings: Settings, timeout: float = 30.0) -> None:
    """Until every service group has committed up to the end of its topics, twice in a row."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await consumer.start()
    try:
        deadline = time.monotonic() + timeout
        calm = 0
        while calm < 2:
            if time.monotonic() > deadline:
                raise TimeoutError("the services did not catch up with their topics")
            calm = calm + 1 if await _caught_up(settings, admin, consumer) else 0
            await asyncio.sleep(0.3)
    finally:
        await consumer.stop()
        await admin.close()


async def _caught_up(settings: Settings, admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer) -> bool:
    for service, names in GROUPS.items():
        committed = await admin.list_consumer_group_offsets(settings.group(service))
        partitions = [TopicPartition(t, p) for t in names for p in await _partitions(consumer, t)]
        ends = await consumer.end_offsets(partitions)
        for tp in partitions:
            meta = committed.get(tp)
            if ends[tp] > 0 and (meta is None or meta.offset < ends[tp]):
                return False
    return True


async def start_groups_at_the_end(settings: Settings) -> None:
    """A pipeline of fresh consumer groups on the session's broker would read every record of the earlier
    tests again (auto_offset_reset=earliest): commit the topics' current ends for its groups first, so it
    reads only what comes next."""
    await ensure_topics(settings)
    for stage in STAGES:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                    group_id=settings.group(stage.name), enable_auto_commit=False)
        await consumer.start()
        try:
            partitions = [TopicPartition(t, p) for t in stage.consumes for p in await _partitions(consumer, t)]
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            await consumer.commit(dict(ends))
        finally:
            await consumer.stop()
