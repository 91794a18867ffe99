"""The command line prints stored and user text as text: a file named `[/bold].csv` is shown, never parsed
as rich markup (which crashed `jobs`, `run` and `watch`), and never sends an escape sequence to the terminal."""

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from clients_import import operator
from clients_import.cli import summary
from shared.db import create_engine, create_tables
from shared.events import ImportNotification, ImportOptions, ImportProgress, ImportRequest, JobStatus, Mode, Source
from shared.settings import Settings
from shared.tables import import_jobs

HOSTILE = ["[/bold].csv", "[bold red]boom[/].csv", "ends with a backslash\\", "\x1b[2J\x1b]0;title\x07.csv", "x\u202egnp.csv"]


def stored_jobs(url: str, names: list[str], status: JobStatus = JobStatus.COMPLETED) -> None:
    async def insert() -> None:
        engine = create_engine(url)
        await create_tables(engine)
        async with engine.begin() as conn:
            for i, name in enumerate(names):
                await conn.execute(import_jobs.insert().values(
                    id=f"[/b]job-{i}", file_name=name, source=Source.API.value, requested_by="[/i]by\\", mode=Mode.UPSERT.value,
                    status=status.value, received_at=datetime.now(UTC), warnings=[]))
        await engine.dispose()

    asyncio.run(insert())


def test_jobs_prints_stored_names_as_they_are(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    stored_jobs(url, HOSTILE)

    done = subprocess.run([sys.executable, "-m", "clients_import.cli", "jobs"], capture_output=True, text=True, timeout=60,
                          env={"DATABASE_URL": url, "COLUMNS": "400", "PATH": "/usr/bin:/bin"})

    assert done.returncode == 0, done.stderr
    shown = done.stdout
    for text in ("[/bold].csv", "[bold red]boom[/].csv", "[/b]job-0", "[/i]by\\ ", "\\x1b[2J\\x1b]0;title\\x07.csv",
                 "x\\u202egnp.csv"):
        assert text in shown, text
    assert "ends with a backslash\\ " in shown and "backslash\\\\" not in shown  # one backslash, as stored
    assert "\x1b" not in shown and "\u202e" not in shown


def test_watch_on_an_ended_job_prints_its_id_as_text(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    stored_jobs(url, ["[/bold].csv"])

    asyncio.run(operator.watch(Settings(database_url=url, _env_file=None), "[/b]job-0"))

    assert "job [/b]job-0 already ended: completed" in capsys.readouterr().out


def test_watch_prints_progress_and_notifications_of_hostile_jobs_as_text(monkeypatch, capsys):
    """`watch` with no job follows every job on the topics: their ids and names are anyone's text."""
    monkeypatch.setenv("COLUMNS", "400")
    progress = ImportProgress(job_id="[/bold]\x1b[31m", status=JobStatus.PROCESSING, processed=1, total=2)
    note = ImportNotification(job_id="[/bold]", file_name="[/i]\x1b[2J.csv", status=JobStatus.COMPLETED, total=1,
                              created=1, updated=0, unchanged=0, rejected=0)

    class Client:
        """The notifications topic as ImportClient shows it: one progress event, then one notification."""

        def __init__(self, _settings) -> None:
            self.notifications: dict[str, ImportNotification] = {}

        async def __aenter__(self):
            return self

        async def __aexit__(self, *exc) -> None:
            return None

        async def wait(self, job_ids, timeout, on_progress, any_new) -> None:
            if self.notifications:
                raise KeyboardInterrupt  # what stops `watch` on every job
            on_progress(progress)
            self.notifications[note.job_id] = note

    monkeypatch.setattr(operator, "ImportClient", Client)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(operator.watch(Settings(kafka_bootstrap_servers="127.0.0.1:1", _env_file=None), None))

    shown = capsys.readouterr().out
    assert "[/bold]\\x1b[31m processing 1/2 rows" in shown
    assert "[/i]\\x1b[2J.csv" in shown and "([/bold])" in shown and "\x1b" not in shown


def test_run_shows_a_progress_bar_for_a_file_named_like_markup(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    request = ImportRequest(job_id="j1", file_name="[/bold].csv", content="firstName,email\n", options=ImportOptions())
    bars, update = operator.progress_display([request], enabled=True)

    with bars:
        update(ImportProgress(job_id="j1", status=JobStatus.PROCESSING, processed=1, total=2))

    assert "[/bold].csv" in capsys.readouterr().err


def test_the_summary_run_prints_shows_control_characters_as_escapes():
    note = ImportNotification(job_id="j1", file_name="\x1b[2Jevil\u202e.csv", status=JobStatus.COMPLETED, total=0,
                              created=0, updated=0, unchanged=0, rejected=0)

    shown = summary(note)

    assert "\x1b" not in shown and "\u202e" not in shown and "\\x1b[2Jevil\\u202e.csv" in shown


def test_status_prints_stored_names_ending_in_a_backslash_or_holding_closing_tags_as_they_are():
    import io

    from rich.console import Console

    from clients_import.status import problems, render
    from tests.unit.test_dlq import _document, _letter

    hostile = "[/bold] a\\"
    member = {"member_id": "m", "client_id": "c", "host": "/10.0.0.1[/i]\\", "partitions": ["p:0"]}
    job = {"job_id": "[/b]j1", "file_name": hostile, "status": "processing", "received_at": "2026-11-25T11:55:00Z",
           "age_s": 400.0}
    document = _document(lag=2, members=[member], dlq={"topic": "dlq", "count": 1, "newest": [_letter(reason=hostile).summary()]},
                         jobs={"unfinished": 1, "oldest": job})
    document["problems"] = problems(document, 600)
    out = io.StringIO()

    render(document, Console(file=out, width=400, color_system=None), 600)

    shown = out.getvalue()
    assert "/10.0.0.1[/i]\\ (1 partitions)" in shown
    assert "[/b]j1 ([/bold] a\\), is processing" in shown
    assert shown.count("[/bold] a\\") >= 3 and "a\\\\" not in shown  # the reason, the file name, the problem


def test_errors_writes_the_report_under_the_safe_download_name(tmp_path, monkeypatch):
    url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    stored_jobs(url, ["../../\u202eevil\x1b[2J.csv"])
    monkeypatch.chdir(tmp_path)

    path = asyncio.run(operator.write_report(Settings(database_url=url, _env_file=None), "[/b]job-0", "errors", None))

    assert path.resolve() == tmp_path / "evil[2J-errors.csv"  # in the current folder, no control or bidi character
    assert path.read_text(encoding="utf-8").startswith('\ufeff"row","line","errors"')
