"""The uploader taking undo requests (services/uploader/app.py, shared/undo.py), on each database backend:
who may undo which import."""

import uuid
from datetime import UTC, datetime

from services.uploader.app import Request, UploaderPorts, take_request
from services.writer.upsert import apply_rows
from shared import jobs
from shared.db import insert_for
from shared.events import ImportRequest
from shared.settings import Settings
from shared.tables import import_jobs

from .test_ledgers import domain, rows

SECRET = f"undo-intake-{uuid.uuid4().hex}"


async def an_import(db, requested_by: str, source: str) -> str:
    job_id = str(uuid.uuid4())
    await apply_rows(db, rows(job_id, {"email": f"ann@{domain()}", "first_name": "Ann"}))
    async with db.begin() as conn:
        await conn.execute(insert_for(conn.dialect.name, import_jobs).values(
            id=job_id, file_name="people.csv", source=source, requested_by=requested_by, mode="upsert",
            dry_run=False, status="completed", total=1, created=1, received_at=datetime.now(UTC),
            finished_at=datetime.now(UTC)))
    return job_id


async def taken(db, request: ImportRequest) -> tuple[str, str | None]:
    ports = UploaderPorts.open(Settings(_env_file=None, job_signing_secret=SECRET), db)
    job, *_ = await take_request(Request(request, f"clients.import.requests/0/{uuid.uuid4().int % 10**9}"), ports)
    reason = getattr(job.event, "reason", None)
    return job.event.event, reason.code if reason else None


def unsigned(undo_of: str, requested_by: str) -> ImportRequest:
    return ImportRequest(idempotency_key=f"u-{uuid.uuid4()}", requested_by=requested_by, undo_of=undo_of)


def signed(undo_of: str) -> ImportRequest:
    job_id = str(uuid.uuid4())
    return ImportRequest(job_id=job_id, job_signature=jobs.sign(SECRET, job_id), requested_by="cli", undo_of=undo_of)


async def test_on_the_topic_only_the_imports_own_requester_may_undo_it(db):
    # Finding 1: an undo from another partner took the import (and its claim) away from its owner.
    theirs = await an_import(db, "partner-acme", "topic")

    assert await taken(db, unsigned(theirs, "partner-evil")) == ("job.rejected", "undo_not_allowed")
    assert await taken(db, unsigned(theirs, "partner-acme")) == ("job.accepted", None)  # the claim was still free


async def test_a_topic_request_naming_our_api_is_not_our_api_but_a_signed_one_is(db):
    by_api, by_page = await an_import(db, "api", "api"), await an_import(db, "web", "api")

    assert await taken(db, unsigned(by_api, "api")) == ("job.rejected", "undo_not_allowed")
    assert await taken(db, unsigned(by_page, "web")) == ("job.rejected", "undo_not_allowed")
    assert await taken(db, signed(by_api)) == ("job.accepted", None)  # our CLI acts for anyone
