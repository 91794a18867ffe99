"""`clients-import undo JOB`: undo an import and print the undo's notification, as `run` prints an import's.

The same rule as the API answers with (shared/undo.py) is checked first, against DATABASE_URL, so a
refusal is said at once in the same words. Then the request goes on the requests topic: to the stages
`serve` runs on KAFKA_BOOTSTRAP_SERVERS when they run there, else to stages this command runs itself
(on a broker of its own when none is set), exactly as `run` does. The request is signed (JOB_SIGNING_SECRET,
or API_TOKEN) as our CLI's, which may undo any import: served stages need the key they have.
"""

import argparse
import asyncio
import secrets
import sys
import uuid
from datetime import UTC, datetime

from shared import jobs, undo
from shared.db import create_engine, has_tables
from shared.events import ImportNotification, ImportRequest, JobStatus, Source
from shared.settings import Settings

from .client import ImportClient
from .dlq import printable
from .operator import progress_display
from .pipeline import Pipeline

__all__ = ["add_undo_command"]

REQUESTED_BY = "cli"


def add_undo_command(commands) -> None:
    undo_parser = commands.add_parser("undo", help="undo an import: delete the clients it created, give the ones it "
                                                   "updated their earlier values back; print the undo's notification")
    undo_parser.add_argument("job", help="the import's job id")
    undo_parser.add_argument("--json", action="store_true", help="the notification as one JSON line")
    undo_parser.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the notification")
    undo_parser.set_defaults(command=cmd_undo)


def cmd_undo(args: argparse.Namespace, settings: Settings) -> int:
    from .cli import _served_there, broker_for, summary  # the command line's own helpers, shared with `run`

    refused = asyncio.run(_refusal(settings, args.job))
    if refused is not None:
        print(f"clients-import undo: {printable(refused.message)} [{refused.code}]", file=sys.stderr)
        return 2
    served = bool(settings.kafka_bootstrap_servers) and asyncio.run(_served_there(settings))
    if served and settings.signing_key is None:
        # An unsigned undo on the topic acts only for its own requester's topic imports (shared/undo.py).
        print("clients-import undo: the stages served there verify who asks by a signature: set "
              "JOB_SIGNING_SECRET (or API_TOKEN) as they have it, or undo through the API [undo_not_allowed]",
              file=sys.stderr)
        return 2
    if settings.signing_key is None:  # the stages run in this process: a key of its own will do
        settings = settings.model_copy(update={"job_signing_secret": secrets.token_hex(32)})
    # Signed, as our CLI: it may undo any import (their uploader checks the signature with its own key).
    job_id = str(uuid.uuid4())
    request = ImportRequest(job_id=job_id, job_signature=jobs.sign(settings.signing_key, job_id),
                            requested_by=REQUESTED_BY, source=Source.CLI, undo_of=args.job)
    with broker_for(settings) as settings:
        try:
            note = asyncio.run(_undo(settings, request, job_id, args.timeout, run_stages=not served,
                                     show_progress=not args.json))
        except TimeoutError:
            print(f"clients-import undo: no notification within {args.timeout:g} s (--timeout)", file=sys.stderr)
            return 1
    print(note.model_dump_json() if args.json else summary(note))
    return 0 if note.status in (JobStatus.COMPLETED, JobStatus.COMPLETED_WITH_ERRORS) else 1


async def _refusal(settings: Settings, job_id: str):
    engine = create_engine(settings.database_url)
    try:
        if not await has_tables(engine):
            return undo.refusal(undo.UndoState(None, None, 0), None, datetime.now(UTC), settings.undo_retention_days)
        async with engine.connect() as conn:
            state = await undo.undo_state(conn, job_id)
        return undo.refusal(state, None, datetime.now(UTC), settings.undo_retention_days)
    finally:
        await engine.dispose()


async def _undo(settings: Settings, request: ImportRequest, job_id: str, timeout: float, run_stages: bool,
                show_progress: bool) -> ImportNotification:
    display, on_progress = progress_display([request.model_copy(update={"job_id": job_id})], show_progress)
    if not run_stages:
        async with ImportClient(settings) as client:
            return await _submit_and_wait(client, request, job_id, timeout, display, on_progress)
    async with Pipeline(settings), ImportClient(settings) as client:  # the pipeline makes the topics first
        return await _submit_and_wait(client, request, job_id, timeout, display, on_progress)


async def _submit_and_wait(client: ImportClient, request: ImportRequest, job_id: str, timeout: float, display,
                           on_progress) -> ImportNotification:
    await client.submit(request, key=job_id)
    with display:
        return (await client.wait([job_id], timeout, on_progress=on_progress))[job_id]
