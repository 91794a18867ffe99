"""The partner's client (`ImportClient`): what it makes of the records on the topics it follows."""

from aiokafka import ConsumerRecord

from clients_import.client import ImportClient
from shared import topics
from shared.events import ImportNotification, JobStatus


def record(topic: str, value: bytes | None) -> ConsumerRecord:
    return ConsumerRecord(topic, 0, 7, 0, 0, None, value, None, -1, len(value or b""), [])


def test_a_record_that_is_not_an_event_is_skipped_and_the_client_keeps_waiting():
    """Anyone allowed to write the topics can put junk there: a partner's wait must not die of it."""
    client = object.__new__(ImportClient)  # no broker: only what it makes of records
    client.notifications, client.progress = {}, {}
    note = ImportNotification(job_id="j-1", file_name="a.csv", status=JobStatus.COMPLETED, total=1, created=1,
                              updated=0, unchanged=0, rejected=0)

    for junk in (b"not json", None, b"{}", b'{"job_id": 5}'):
        client._take(record(topics.NOTIFICATIONS, junk), None)
        client._take(record(topics.PROGRESS, junk), None)
    client._take(record(topics.NOTIFICATIONS, note.model_dump_json().encode()), None)

    assert client.notifications == {"j-1": note} and client.progress == {}
