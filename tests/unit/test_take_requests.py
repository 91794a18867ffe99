"""The uploader's answer to a request for a job that has ended: the same record delivered again (a
restart before its offset was committed) answers nothing; another request for the job (the same
idempotency key) is a repeat, and says which request it is."""

import base64

from services.uploader.app import Request, take_requests
from shared import topics
from shared.events import ImportOptions, ImportRequest, JobAccepted, JobRepeated, JobStatus, Source

from .uploader_fakes import memory_ports


def a_request(origin: str) -> Request:
    event = ImportRequest(
        file_name="clients.csv", source=Source.TOPIC, requested_by="partner", idempotency_key="batch-7",
        content_base64=base64.b64encode(b"firstName,email\nAda,ada@example.com\n").decode(), options=ImportOptions(),
    )
    return Request(event, origin)


async def test_a_request_delivered_again_after_its_job_ended_answers_nothing_and_a_new_one_is_a_repeat():
    statuses: dict[str, JobStatus] = {}
    ports = memory_ports(statuses)
    first = await take_requests([a_request(f"{topics.REQUESTS}/0/41")], ports)
    job_id = first[0].event.job_id
    assert isinstance(first[0].event, JobAccepted)
    statuses[job_id] = JobStatus.COMPLETED

    assert await take_requests([a_request(f"{topics.REQUESTS}/0/41")], ports) == []
    again = await take_requests([a_request(f"{topics.REQUESTS}/2/9")], ports)
    assert [p.event for p in again] == [JobRepeated(job_id=job_id, request=f"{topics.REQUESTS}/2/9")]
