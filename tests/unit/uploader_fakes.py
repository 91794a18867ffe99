"""The uploader's ports in memory, for the tests of its handler."""

from collections.abc import Mapping

from services.uploader.app import FirstRequest, UploaderPorts
from shared.callbacks import CallbackPolicy
from shared.events import JobStatus
from shared.reading import Limits


def memory_ports(statuses: Mapping[str, JobStatus] | None = None, policy: CallbackPolicy = CallbackPolicy()) -> UploaderPorts:
    """Ports whose jobs have the statuses given (none by default): the test may change them as it goes."""
    taken: dict[str, FirstRequest] = {}
    statuses = {} if statuses is None else statuses

    async def take(job_id: str, digest: str, origin: str) -> FirstRequest:
        return taken.setdefault(job_id, FirstRequest(digest, origin))

    async def job_status(job_id: str) -> JobStatus | None:
        return statuses.get(job_id)

    return UploaderPorts(Limits(max_records=50, max_bytes=64 * 1024), 7, 64 * 1024, "key", job_status, take, policy)
