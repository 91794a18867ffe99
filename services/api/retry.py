"""Retrying an import's rejected rows over HTTP (the rules: shared/retries.py).

    GET  /imports/{id}/retry   the rows a retry of the import may fix: each with its original values and errors
    POST /imports/{id}/retry   corrected rows, as a CSV upload (multipart field `file`, e.g. the edited errors.csv,
                               whose `row` column names the original row) or as JSON
                               {"rows": [{"row": 7, "values": {"email": "ann@example.com"}}], "callback_url": ...}
                               (a value not given stays the original's; a key is a column of the original file or a
                               field's name). Header `Idempotency-Key` as for POST /imports.

The answer is 202 with the retry's `job_id` and `status_url`; the retry runs through the pipeline like any
import, under the original's row numbers. For JSON it also says which rows are retried and which are
answered `not_rejected` (for a CSV the notification says it).

Codes: 404 unknown_import; 409 not_retryable (a dry run, a file rejected whole, or an undone import),
import_running, nothing_to_retry (no row left to retry, or none of the rows given); 422 invalid_retry_rows
(a row number that is no row of the import, or given twice), invalid_rows (JSON not of that shape, past a
bound, or a value with a NUL or an unpaired surrogate), invalid_json (not JSON, or not UTF-8),
invalid_options (dry_run, mode, column_map or mapping: a retry takes none); 415 not_multipart_or_json; and
every code of POST /imports's upload (the same reader and bounds). A JSON key naming no column of the import
nor a field is answered in the 202's `rows.warnings` (`unknown_columns`) and carried for the uploader, which
warns of it in the retry's notification as for a CSV.
"""

import asyncio
import base64
import uuid
from pathlib import PurePath
from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from faststream.kafka.fastapi import KafkaRouter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import jobs, retries
from shared.callbacks import CallbackPolicy, CallbackRefused, check_url
from shared.events import ImportRequest, Issue, JobStatus, Source
from shared.reading import Limits
from shared.settings import Settings

from . import readside
from .errors import ApiError
from .queueing import publish_request
from .upload import check_contract_text, dry_run_of, file_too_large, take_upload

__all__ = ["add_retry_routes", "RETRY_PATH"]

RETRY_PATH = "/imports/*/retry"  # for the body bounds (limits.py): an upload's
_STATUS = {"invalid_json": 422, "invalid_rows": 422, "invalid_options": 422,
           "unknown_import": 404, "not_retryable": 409, "import_running": 409, "nothing_to_retry": 409,
           "retry_not_allowed": 403, "invalid_retry_rows": 422, "missing_row_column": 422}

_RETRY_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": {
            "type": "object", "required": ["file"],
            "properties": {
                "file": {"type": "string", "format": "binary",
                         "description": "a CSV with a `row` column naming the original rows: the edited errors.csv"},
                "callback_url": {"type": "string", "format": "uri"},
            }}},
        "application/json": {"schema": {
            "type": "object", "required": ["rows"],
            "properties": {
                "rows": {"type": "array", "items": {
                    "type": "object", "required": ["row", "values"],
                    "properties": {"row": {"type": "integer", "minimum": 1},
                                   "values": {"type": "object", "additionalProperties": {"type": "string"},
                                              "description": "column of the original file (or field name) -> value; "
                                                             "a column not given keeps its original value"}}}},
                "callback_url": {"type": "string", "format": "uri"},
            }}},
    },
}


def add_retry_routes(app: FastAPI, engine: AsyncEngine, reader: AsyncEngine, router: KafkaRouter, caller,
                     settings: Settings) -> None:
    Caller = Annotated[str, Depends(caller)]

    async def original_of(job_id: str) -> retries.Original:
        async with reader.connect() as conn:
            found = await retries.load_original(conn, job_id)
        if found is None:
            raise ApiError(404, "unknown_import", "There is no import with that id.")
        return found

    @app.get("/imports/{job_id}/retry", tags=["imports"])
    async def retryable_rows(job_id: str, _: Caller) -> dict:
        """The rows a retry of this import may fix (of the import it retries, for a retry): each row's number,
        line, original values (by the file's columns) and errors (each with the column it is about)."""
        original = await original_of(job_id)
        refused = retries.refusal(original, "", trusted=True)
        columns = original.fields
        rows = [{"row": number, "line": row.line, "values": row.values,
                 "errors": [{**e, "column": columns.get(e.get("field") or "", e.get("field"))} for e in row.errors]}
                for number, row in sorted(original.rejected.items()) if number in original.retryable]
        return {"job_id": original.job_id, "file_name": original.file_name, "columns": original.header,
                "fields": columns, "rows": rows, "retryable": refused is None,
                "refusal": refused.model_dump() if refused else None}

    @app.post("/imports/{job_id}/retry", status_code=202, tags=["imports"], openapi_extra={"requestBody": _RETRY_BODY})
    async def retry_import(job_id: str, request: Request, who: Caller) -> JSONResponse:
        """Import corrected rows of an import again: only its rows still rejected are retried."""
        key = check_contract_text("idempotency_key", request.headers["idempotency-key"], "The Idempotency-Key header",
                                  "idempotency_key") if request.headers.get("idempotency-key") else None
        original = await original_of(job_id)
        _check(retries.refusal(original, who, trusted=True))
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind == "application/json":
            file_name, content, callback_url, answered = await _json_rows(request, original, settings)
        elif kind == "multipart/form-data":
            file_name, content, callback_url, answered = await _csv_upload(request, original, settings)
        else:
            raise ApiError(415, "not_multipart_or_json", "Send the corrected rows as JSON ({\"rows\": [...]}) or as a "
                           "CSV file in a multipart/form-data field named 'file'.")
        options = retries.options_of(original, _callback(callback_url, settings))
        retry_id = jobs.idempotent_job_id("api", who, key) if key else _new_id()
        job = ImportRequest(
            idempotency_key=key, requested_by=who, source=Source.API, file_name=file_name, content_base64=content,
            options=options, job_id=retry_id, job_signature=jobs.sign(settings.signing_key, retry_id),
            retry_of=original.job_id,
        )
        status = await _record_and_publish(engine, router, job)
        body = {"job_id": retry_id, "status": status, "status_url": f"/imports/{retry_id}", "retry_of": original.job_id}
        if answered is not None:
            body["rows"] = answered
        return JSONResponse(body, status_code=202)


def _check(refused: Issue | None) -> None:
    if refused is not None:
        raise ApiError(_STATUS.get(refused.code, 409), refused.code, refused.message)


async def _json_rows(request: Request, original: retries.Original, settings: Settings):
    """The JSON form: checked against its bounds, answered row by row, made the retry's CSV (off the event
    loop: a body of many rows and columns is CPU work)."""
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > settings.max_bytes:
            raise file_too_large(settings.max_bytes)
    return await asyncio.to_thread(_json_retry, bytes(raw), original, settings)


def _json_retry(raw: bytes, original: retries.Original, settings: Settings):
    taken = retries.json_rows(raw, original, Limits.of(settings))
    if isinstance(taken, Issue):
        _check(taken)
    rows, rest = taken
    given = {k: rest.get(k) for k in retries.OPTION_KEYS}
    _check(retries.options_refusal(original, given["dry_run"] not in (None, False),
                                   None if given["mode"] is None else str(given["mode"]),
                                   given["column_map"] is not None or given["mapping"] is not None))
    callback = rest.get("callback_url")
    if callback is not None and not isinstance(callback, str):
        raise ApiError(422, "invalid_options", "callback_url must be a string.")
    numbers = retries.row_numbers(["row"], [[str(number)] for number, _ in rows], original.total)
    if isinstance(numbers, Issue):
        _check(numbers)
    answered = retries.answers(original, numbers, original.retryable)
    if len(answered) == len(numbers):
        raise ApiError(409, "nothing_to_retry", "None of the rows given is a rejected row of that import left to retry: "
                       + " ".join(a.message for a in list(answered.values())[:10]))
    room = settings.max_columns - len(original.header) - 1
    content = retries.rows_csv(original, rows, room).encode()
    if len(content) > settings.max_bytes:  # the original's values fill each row: the reader would refuse it
        raise file_too_large(settings.max_bytes)
    stem = PurePath(original.file_name).stem[:200] or "import"
    summary = {"retried": [n for n in numbers if n not in answered],
               "not_rejected": [{"row": n, "code": a.code, "message": a.message} for n, a in answered.items()]}
    unknown = retries.unknown_keys(original, rows)
    if unknown:
        summary["warnings"] = [retries.unknown_warning(original.file_name, unknown).model_dump(exclude_none=True)]
    return f"{stem}-fixes.csv", base64.b64encode(content).decode(), callback, summary


async def _csv_upload(request: Request, original: retries.Original, settings: Settings):
    upload = await take_upload(request, settings.max_bytes)
    fields = upload.fields
    _check(retries.options_refusal(original, dry_run_of(fields.get("dry_run") or ""),
                                   fields.get("mode") or None, bool(fields.get("column_map") or fields.get("mapping"))))
    return upload.file_name, base64.b64encode(bytes(upload.data)).decode(), fields.get("callback_url"), None


def _callback(url: str | None, settings: Settings) -> str | None:
    if not url:
        return None
    try:
        check_url(url, CallbackPolicy.of(settings))
    except CallbackRefused as refused:
        raise ApiError(422, "invalid_options", str(refused)) from None
    return url


def _new_id() -> str:
    return str(uuid.uuid4())


async def _record_and_publish(engine: AsyncEngine, router: KafkaRouter, job: ImportRequest) -> str:
    """As POST /imports does: the job recorded first, then the request published (again, for a known one:
    the uploader answers a repeat with the notification once more). A key reused for other rows: 409."""
    async with engine.begin() as conn:
        known = await readside.job_document(conn, job.job_id, 0)
        bound = await jobs.bound_digest(conn, job.job_id) if known is not None else None
        if known is None:
            await jobs.record_received(conn, job.job_id, job)
    if bound is not None and bound != jobs.content_digest(job):
        raise ApiError(409, "idempotency_key_reused", "That Idempotency-Key was used before for other rows (or another "
                       "import): use a new key for a new retry.")
    await publish_request(engine, router, job, recorded_now=known is None)
    return known["status"] if known else JobStatus.RECEIVED.value
