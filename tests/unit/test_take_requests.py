"""The uploader's answer to a request for a job that has ended: the same record delivered again (a
restart before its offset was committed) answers nothing; another request for the job (the same
idempotency key) is a repeat, and says which request it is."""

import base64

from services.uploader.app import FirstRequest, Request, UploaderPorts, take_requests
from services.uploader.reading import Limits
from shared import topics
from shared.events import ImportOptions, ImportRequest, JobAccepted, JobRepeated, JobStatus, Source


def ports_with(statuses: dict[str, JobStatus]) -> UploaderPorts:
    """Ports whose jobs have the statuses the test gives them."""
    taken: dict[str, FirstRequest] = {}

    async def take(job_id: str, digest: str, origin: str) -> FirstRequest:
        return taken.setdefault(job_id, FirstRequest(digest, origin))

    async def job_status(job_id: str) -> JobStatus | None:
        return statuses.get(job_id)

    return UploaderPorts(Limits(max_records=50, max_bytes=64 * 1024), 7, 64 * 1024, "key", job_status, take)


def a_request(origin: str) -> Request:
    event = ImportRequest(
        file_name="clients.csv", source=Source.TOPIC, requested_by="partner", idempotency_key="batch-7",
        content_base64=base64.b64encode(b"firstName,email\nAda,ada@example.com\n").decode(), options=ImportOptions(),
    )
    return Request(event, origin)


async def test_a_request_delivered_again_after_its_job_ended_answers_nothing_and_a_new_one_is_a_repeat():
    statuses: dict[str, JobStatus] = {}
    ports = ports_with(statuses)
    first = await take_requests([a_request(f"{topics.REQUESTS}/0/41")], ports)
    job_id = first[0].event.job_id
    assert isinstance(first[0].event, JobAccepted)
    statuses[job_id] = JobStatus.COMPLETED

    assert await take_requests([a_request(f"{topics.REQUESTS}/0/41")], ports) == []
    again = await take_requests([a_request(f"{topics.REQUESTS}/2/9")], ports)
    assert [p.event for p in again] == [JobRepeated(job_id=job_id, request=f"{topics.REQUESTS}/2/9")]
