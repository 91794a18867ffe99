"""Reading a topic back on a real broker: where it ends, and which keys were published since."""

import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from shared.readback import KafkaPublishedLog
from shared.settings import Settings


async def test_keys_published_since_a_noted_end_are_found_and_earlier_ones_are_not(settings: Settings):
    topic = f"readback-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    log = KafkaPublishedLog(settings)
    try:
        for key in ("before-1", "before-2"):
            await producer.send_and_wait(topic, b"{}", key=key.encode())
        ends = await log.ends(topic)
        assert sorted(ends) == [0, 1, 2] and sum(ends.values()) == 2
        for key in ("after-1", "after-2", "after-3"):
            await producer.send_and_wait(topic, b"{}", key=key.encode())
        keys = ["before-1", "before-2", "after-1", "after-3", "never"]
        assert await log.keys_since(topic, ends, keys) == {"after-1", "after-3"}
        assert await log.keys_since(topic, {p: 0 for p in ends}, keys) == {"before-1", "before-2", "after-1", "after-3"}
        assert await log.keys_since(topic, await log.ends(topic), keys) == set()
    finally:
        await log.close()
        await producer.stop()
