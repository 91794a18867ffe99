"""From an import request to what the uploader publishes: the job event, then the job's chunks."""

import json
import uuid

from aiokafka import ConsumerRecord

from shared import topics
from shared.events import ImportRequest, Issue, JobAccepted, JobRefused, JobRepeated, Source
from shared.kafka import Publication

from .chunking import cut
from .reading import Limits, read_file

_NAMESPACE = uuid.UUID("5b0f8a52-1f0e-4a59-9d57-3c1f3f0f6d11")


def job_id_for(request: ImportRequest, record: ConsumerRecord | None = None) -> str:
    """Stable under redelivery: the same idempotency key (or the same Kafka record) is the same job."""
    if request.job_id:
        return request.job_id
    if request.idempotency_key:
        return str(uuid.uuid5(_NAMESPACE, f"key\x00{request.requested_by}\x00{request.idempotency_key}"))
    if record is not None:
        return str(uuid.uuid5(_NAMESPACE, f"record\x00{record.topic}\x00{record.partition}\x00{record.offset}"))
    return str(uuid.uuid4())


def plan_job(request: ImportRequest, job_id: str, limits: Limits, chunk_rows: int) -> list[Publication]:
    common = dict(
        job_id=job_id,
        file_name=request.file_name,
        source=request.source,
        requested_by=request.requested_by,
        options=request.options,
        idempotency_key=request.idempotency_key,
    )
    try:
        data = request.file_bytes()
    except ValueError as error:
        return [_refused(common, Issue(code="invalid_request", message=str(error)))]
    read = read_file(data, limits)
    if isinstance(read, Issue):
        return [_refused(common, read)]
    chunks = cut(job_id, read, chunk_rows, request.options)
    accepted = JobAccepted(**common, total=len(read.records), chunks=len(chunks), warnings=tuple(read.warnings))
    return [
        Publication(topics.JOBS, accepted, key=job_id),
        *(Publication(topics.CHUNKS, chunk, key=job_id) for chunk in chunks),
    ]


def repeated(job_id: str) -> list[Publication]:
    return [Publication(topics.JOBS, JobRepeated(job_id=job_id), key=job_id)]


def refuse_malformed(raw: bytes, error: Exception, record: ConsumerRecord | None = None) -> list[Publication]:
    """A request we cannot read still gets a rejected notification when it says enough to be told apart:
    a job id, an idempotency key, a requester or a file name (JSON, at least)."""
    try:
        fields = json.loads(raw)
    except ValueError:
        return []
    if not isinstance(fields, dict) or not any(fields.get(k) for k in ("job_id", "idempotency_key", "requested_by", "file_name")):
        return []
    requested_by = str(fields.get("requested_by") or "unknown")[:200]
    if fields.get("job_id"):
        job_id = str(fields["job_id"])[:64]
    elif fields.get("idempotency_key"):
        job_id = str(uuid.uuid5(_NAMESPACE, f"key\x00{requested_by}\x00{fields['idempotency_key']}"))
    elif record is not None:
        job_id = str(uuid.uuid5(_NAMESPACE, f"record\x00{record.topic}\x00{record.partition}\x00{record.offset}"))
    else:
        return []
    reason = Issue(code="invalid_request", message=f"The import request is not valid: {_first_line(error)}")
    common = dict(
        job_id=job_id,
        file_name=str(fields.get("file_name") or "(unnamed)")[:255],
        source=Source.TOPIC,
        requested_by=requested_by,
    )
    return [_refused(common, reason)]


def _refused(common: dict, reason: Issue) -> Publication:
    return Publication(topics.JOBS, JobRefused(**common, reason=reason), key=common["job_id"])


def _first_line(error: Exception) -> str:
    return " ".join(str(error).split())[:500]
