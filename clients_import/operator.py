"""What operators see: recent jobs, a live view of jobs as they run, reports on disk, a progress bar."""

import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from services.api import readside, reports
from shared.db import create_engine, has_tables, reading
from shared.events import IMPORT_OUTCOMES, ImportProgress, ImportRequest, JobStatus
from shared.settings import Settings

from .client import ImportClient
from .dlq import plain, printable

_TONE_STYLE = {"good": "green", "partial": "yellow", "bad": "red", "running": "cyan"}
STATUS_STYLE = {status.value: _TONE_STYLE[status.text.tone] for status in JobStatus}


# An undo's own counts (deleted, restored, conflicts) are in `--json` and its message.
_IMPORT_OUTCOMES = IMPORT_OUTCOMES


async def show_jobs(settings: Settings, limit: int, as_json: bool) -> None:
    engine = create_engine(settings.database_url)
    items, total = [], 0
    if await has_tables(engine):  # a database no service has used yet simply has no imports
        async with reading(engine).connect() as conn:
            items, total = await readside.list_jobs(conn, limit, 0)
    await engine.dispose()
    if as_json:
        import json

        for item in items:
            print(json.dumps(item, default=lambda value: value.isoformat()))
        return
    table = Table(title=f"Recent imports ({len(items)} of {total})")
    table.add_column("job", no_wrap=True)
    for column in ("file", "status", "rows", *(o.value for o in _IMPORT_OUTCOMES), "by", "received at"):
        table.add_column(column, overflow="fold")
    for j in items:  # every cell plain text: a file named `[/bold].csv` is shown, not parsed as markup
        table.add_row(plain(j["job_id"]), plain(j["file_name"]), _status(j["status"], j.get("kind")),
                      plain(f"{j['processed']}/{j['total']}"), *(plain(j[o.count]) for o in _IMPORT_OUTCOMES),
                      plain(j["requested_by"]), plain(f"{j['received_at']:%Y-%m-%d %H:%M:%S}"))
    Console().print(table)


def _status(status: str, kind: str | None = None) -> Text:
    shown = f"{status} (undo)" if kind == "undo" else status
    return Text(printable(shown), style=STATUS_STYLE.get(status, ""))


async def watch(settings: Settings, job_id: str | None) -> None:
    """Follow one job to its notification, or every job until interrupted."""
    console = Console()

    def on_progress(progress: ImportProgress) -> None:
        if job_id in (None, progress.job_id):
            console.print(Text.assemble(f"{progress.at:%H:%M:%S} ", plain(progress.job_id), " ", _status(progress.status),
                                        f" {progress.processed}/{progress.total} rows"))

    def ended(found: dict | None) -> bool:
        if found and JobStatus(found["status"]).is_final:
            console.print(Text.assemble("job ", plain(job_id), " already ended: ", (printable(found["status"]), "bold"),
                                        f" — {found['created']} created, {found['updated']} updated, "
                                        f"{found['unchanged']} unchanged, {found['rejected']} rejected"))
            return True
        return False

    if job_id and ended(await _job_document(settings, job_id)):  # no broker needed for a job long ended
        return
    async with ImportClient(settings) as client:
        # Listening, then asking the database again: a job that ends between the two is in one or the other
        # (its notification is published after its end is committed). Asked only before, it could be in neither.
        found = await _job_document(settings, job_id) if job_id else None
        if ended(found):
            return
        console.print(Text.assemble("watching ", Text.assemble("job ", plain(job_id)) if job_id else "every job", " on ",
                                    plain(settings.kafka_bootstrap_servers)))
        # A job no service has recorded yet (a request just published) gets a while to appear, then an answer.
        unknown_until = time.monotonic() + UNKNOWN_JOB_WAIT_S if job_id and found is None else None
        while True:
            before = set(client.notifications)
            try:
                await client.wait([job_id] if job_id else [], timeout=1 if unknown_until else 3600,
                                  on_progress=on_progress, any_new=job_id is None)
            except TimeoutError:
                if unknown_until and await _job_document(settings, job_id):
                    unknown_until = None
                elif unknown_until and time.monotonic() > unknown_until:
                    raise LookupError(f"no import with id {job_id} in {settings.database_url}, and none appeared within "
                                      f"{UNKNOWN_JOB_WAIT_S:.0f} s (use the DATABASE_URL that `serve` uses; a request "
                                      "just published waits for an uploader to take it: behind a backlog, watch again "
                                      "later, or `clients-import status` shows the lag)") from None
                continue
            for note_id in set(client.notifications) - before:
                note = client.notifications[note_id]
                console.print(Text.assemble((printable(note.message), "bold"), " ", _status(note.status), " (",
                                            plain(note.job_id), ")"))
            if job_id and job_id in client.notifications:
                return


UNKNOWN_JOB_WAIT_S = 30.0  # how long `watch JOB` waits for a job no service has recorded yet


async def _job_document(settings: Settings, job_id: str) -> dict | None:
    engine = create_engine(settings.database_url)
    document = None
    if await has_tables(engine):
        async with reading(engine).connect() as conn:
            document = await readside.job_document(conn, job_id, settings.first_errors)
    await engine.dispose()
    return document


async def write_report(settings: Settings, job_id: str, kind: str, output: Path | None) -> Path:
    engine = create_engine(settings.database_url)
    found = None
    if await has_tables(engine):
        async with reading(engine).connect() as conn:
            found = await readside.report(conn, job_id, kind)
    await engine.dispose()
    if found is None:
        raise LookupError(f"no import with id {job_id} in {settings.database_url} (use the DATABASE_URL that `serve` uses)")
    path = output or Path(reports.download_name(found[0], f"-{kind}.csv"))  # the stored name is anyone's text
    path.write_text(found[1], encoding="utf-8")
    return path


def progress_display(requests: list[ImportRequest], enabled: bool) -> tuple[AbstractContextManager, Callable]:
    """A bar per file on a terminal; nothing when the output is JSON or not a terminal."""
    if not enabled or not sys.stderr.isatty():
        return nullcontext(), lambda _: None
    # markup=False: the description is a file's name, shown as it is (rich would parse `[/bold]` in it and fail).
    bars = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}", markup=False), TimeElapsedColumn(), console=Console(stderr=True),
                    transient=False)
    tasks = {r.job_id: bars.add_task(printable(r.file_name, 60), total=None, status=JobStatus.RECEIVED.value)
             for r in requests}

    def update(progress: ImportProgress) -> None:
        if progress.job_id in tasks:
            bars.update(tasks[progress.job_id], completed=progress.processed, total=progress.total or None,
                        status=progress.status.value)

    return bars, update


