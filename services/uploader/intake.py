"""From an import request to what the uploader publishes: the job event, then the job's chunks."""

import json

from pydantic import ValidationError

from shared import jobs, topics
from shared.events import (
    AppliedMapping,
    ImportRequest,
    Issue,
    JobAccepted,
    JobKind,
    JobRefused,
    JobRepeated,
    RowsAccepted,
    Source,
)
from shared.kafka import Publication
from shared.mappings import combined_map, unknown_mapping
from shared.reading import Limits, read_file

from .chunking import cut


def plan_job(
    request: ImportRequest, job_id: str, limits: Limits, chunk_rows: int, chunk_max_bytes: int = 1024 * 1024,
    saved: dict | None = None,
) -> list[Publication]:
    """`saved` is the saved mapping the request names (shared/mappings.py), as found when the request was taken."""
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
    name = request.options.mapping
    if name is not None and saved is None:
        return [_refused({**common, "mapping": AppliedMapping(name=name)}, unknown_mapping(name))]
    columns = combined_map(saved["columns"] if saved else {}, request.options.column_map or {})
    applied = AppliedMapping(name=name, version=saved["version"] if saved else None, columns=columns)
    read = read_file(data, limits, columns)
    if isinstance(read, Issue):
        return [_refused({**common, "mapping": applied if saved or columns else None}, read)]
    applied = applied.model_copy(update={"fields": {field: read.header[index] for field, index in read.columns.items()}})
    chunks = cut(job_id, read, chunk_rows, request.options, max_bytes=chunk_max_bytes)
    accepted = JobAccepted(**common, total=len(read.records), chunks=len(chunks), warnings=tuple(read.warnings),
                           mapping=applied)
    return [
        Publication(topics.JOBS, accepted, key=job_id),
        *(Publication(topics.CHUNKS, chunk, key=job_id) for chunk in chunks),
    ]


def plan_undo_job(
    request: ImportRequest, job_id: str, refusal: Issue | None, file_name: str, rows: int, partitions: int
) -> list[Publication]:
    """An undo job: refused (`refusal`, from shared/undo.py), or accepted with the `rows` of the import it
    takes back, and one share for each partition of the accepted rows, on that partition: each writer
    takes back the rows of the emails it owns, in order with their other rows."""
    common = dict(job_id=job_id, file_name=file_name or request.file_name or "(unknown import)", source=request.source,
                  requested_by=request.requested_by, options=request.options,
                  idempotency_key=request.idempotency_key, kind=JobKind.UNDO, undo_of=request.undo_of)
    if refusal is not None:
        return [_refused(common, refusal)]
    shares = [
        Publication(topics.ROWS_ACCEPTED, RowsAccepted(job_id=job_id, chunk=0, rows=(), undo_of=request.undo_of,
                                                       partition=p, partitions=partitions), key=job_id, partition=p)
        for p in range(partitions)
    ]
    return [Publication(topics.JOBS, JobAccepted(**common, total=rows, chunks=0), key=job_id), *shares]


def repeated(job_id: str, request: str) -> list[Publication]:
    return [Publication(topics.JOBS, JobRepeated(job_id=job_id, request=request), key=job_id)]


def refuse_unsigned(request: ImportRequest, job_id: str) -> list[Publication]:
    """A request naming a job id it did not get from us: refused under a job id of its own."""
    return _refuse_request(request, job_id, Issue(code="job_id_not_allowed", message=(
        "The request names a job_id, which only our own API and command line may set: leave job_id out "
        "(use idempotency_key to make a request safe to repeat).")))


def refuse_callback(request: ImportRequest, job_id: str, refusal: str) -> list[Publication]:
    """A request whose callback URL this deployment will not call: refused whole, so the requester is not
    left waiting for a call that never comes; the refusal is not sent to that URL either."""
    options = request.options.model_copy(update={"callback_url": None})
    common = dict(job_id=job_id, file_name=request.file_name, source=request.source, requested_by=request.requested_by,
                  options=options, idempotency_key=request.idempotency_key)
    return [_refused(common, Issue(code="invalid_request", message=f"The import request is not valid: {refusal}"))]


def refuse_reused(request: ImportRequest, job_id: str) -> list[Publication]:
    """A request naming a job (by its idempotency key, or a signed id) that was taken for another file."""
    return _refuse_request(request, job_id, Issue(code="idempotency_key_reused", message=(
        "This idempotency key (or job id) was already used for a different file or options: nothing of this "
        "request was imported. Use a new idempotency key for a new file.")))


def _refuse_request(request: ImportRequest, job_id: str, reason: Issue) -> list[Publication]:
    """A readable request refused whole, under `job_id` (always one of its own), saying what it asked for."""
    common = dict(job_id=job_id, file_name=request.file_name, source=Source.TOPIC, requested_by=request.requested_by,
                  options=request.options, idempotency_key=request.idempotency_key)
    return [_refused(common, reason)]


def refuse_malformed(raw: bytes, error: BaseException, origin: str | None = None) -> list[Publication]:
    """A request we cannot read still gets a rejected notification when it says enough to be told apart:
    an idempotency key, a requester or a file name (JSON, at least). Always under a job id of its own
    (from where the record sits), never under one it names or its key would make: a malformed request
    must not end, or take ahead of time, a job someone else (or a corrected request) will start."""
    fields = _loose_json(raw)
    if origin is None or not fields or not any(fields.get(k) for k in ("idempotency_key", "requested_by", "file_name")):
        return []
    requested_by = _text(fields.get("requested_by"), 200) or "unknown"
    job_id = jobs.origin_job_id(origin)
    reason = Issue(code="invalid_request", message=f"The import request is not valid: {_first_line(error)}")
    common = dict(
        job_id=job_id, file_name=_text(fields.get("file_name"), 255) or "(unnamed)", source=Source.TOPIC,
        requested_by=requested_by, idempotency_key=_text(fields.get("idempotency_key"), 200) or None,
    )
    return [_refused(common, reason)]


def _loose_json(raw: bytes) -> dict | None:
    """The request's top-level fields when it is a JSON object at all, whatever else is wrong with it."""
    if len(raw) > 64 * 1024 * 1024:
        return None
    try:
        fields = json.loads(raw)
    except Exception:  # not JSON, too deep (RecursionError), bad Unicode: nothing to address
        return None
    return fields if isinstance(fields, dict) else None


def _text(value: object, limit: int) -> str:
    """A value a malformed request gave, as printable text of bounded length."""
    text = value if isinstance(value, str) else (str(value)[:limit] if isinstance(value, int | float | bool) else "")
    return "".join(c for c in text if c.isprintable())[:limit]


def _refused(common: dict, reason: Issue) -> Publication:
    return Publication(topics.JOBS, JobRefused(**common, reason=reason), key=common["job_id"])


def _first_line(error: Exception) -> str:
    """What is wrong, for the requester: each field and its problem, not pydantic's dump of the input."""
    text = str(error)
    if isinstance(error, ValidationError):
        problems = error.errors(include_url=False, include_input=False, include_context=False)
        said = [f"{'.'.join(map(str, p['loc'])) or 'the request'}: {p['msg'].removeprefix('Value error, ')}"
                for p in problems[:3]]
        text = "; ".join(said) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return " ".join(text.split())[:500]
