"""The partner's side of the contract, with a plain Kafka client: publish a request, wait for its notification."""

import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from shared import topics
from shared.events import ImportNotification, ImportProgress, ImportRequest
from shared.kafka import client_options, start_client
from shared.settings import Settings

log = logging.getLogger("clients_import.client")


class ImportClient:
    """Publishes requests and follows notifications (and progress) of the jobs it is told about."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.producer = AIOKafkaProducer(**client_options(settings), max_request_size=settings.request_max_bytes, linger_ms=2)
        self.consumer = AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                         fetch_max_wait_ms=settings.fetch_max_wait_ms)
        self.notifications: dict[str, ImportNotification] = {}
        self.progress: dict[str, ImportProgress] = {}

    async def __aenter__(self) -> "ImportClient":
        try:
            await start_client(self.producer, self.settings)  # BrokerAccessError when Kafka refuses us
            await start_client(self.consumer, self.settings)
        except BaseException:
            await self.producer.stop()
            await self.consumer.stop()
            raise
        partitions = []
        for topic in (topics.NOTIFICATIONS, topics.PROGRESS):
            for p in self.consumer.partitions_for_topic(topic) or await self._partitions(topic):
                partitions.append(TopicPartition(topic, p))
        self.consumer.assign(partitions)
        await self.consumer.seek_to_end(*partitions)
        for tp in partitions:  # resolve now: anything published after this point is seen
            await self.consumer.position(tp)
        return self

    async def _partitions(self, topic: str) -> set[int]:
        await self.consumer._client.force_metadata_update()  # noqa: SLF001 - aiokafka has no public call for this
        found = self.consumer.partitions_for_topic(topic)
        if not found:
            raise RuntimeError(f"topic {topic} does not exist on {self.settings.kafka_bootstrap_servers}")
        return found

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()
        await self.producer.stop()

    async def submit(self, request: ImportRequest, key: str | None = None) -> None:
        await self.producer.send_and_wait(
            topics.REQUESTS, request.model_dump_json().encode(), key=(key or request.job_id or "").encode() or None,
            headers=[("content-type", b"application/json")],
        )

    async def wait(
        self, job_ids: Iterable[str], timeout: float = 120.0, on_progress=None, any_new: bool = False
    ) -> dict[str, ImportNotification]:
        """Until every given job has its notification (or, with any_new, until any new one comes)."""
        wanted = set(job_ids)
        known = len(self.notifications)
        deadline = time.monotonic() + timeout
        while not (wanted <= self.notifications.keys() and (not any_new or len(self.notifications) > known)):
            left = deadline - time.monotonic()
            if left <= 0:
                missing = ", ".join(sorted(wanted - self.notifications.keys()))
                raise TimeoutError(f"no notification within {timeout:.0f} s for job(s) {missing}")
            batches = await self.consumer.getmany(timeout_ms=int(min(left, 0.5) * 1000))
            for records in batches.values():
                for record in records:
                    self._take(record, on_progress)
        return {job_id: self.notifications[job_id] for job_id in wanted}

    def _take(self, record, on_progress) -> None:
        try:
            event = (ImportNotification if record.topic == topics.NOTIFICATIONS else ImportProgress).model_validate_json(
                record.value or b"")
        except ValueError:  # not ours (anyone allowed to write the topic can): no reason to stop waiting
            log.warning("skipped a record that is not an event", extra={
                "step": "client.skipped", "topic": record.topic, "partition": record.partition, "offset": record.offset})
            return
        if isinstance(event, ImportNotification):
            self.notifications[event.job_id] = event
        else:
            self.progress[event.job_id] = event
            if on_progress:
                on_progress(event)
