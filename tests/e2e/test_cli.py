"""The `clients-import` command line, run as an operator runs it."""

import asyncio
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from shared.events import JobStatus

from .command_line import operator_env, run_cli
from .conftest import unique_domain

CLI = [sys.executable, "-m", "clients_import.cli"]


def _env(settings, tmp_path: Path) -> dict:
    """`run` as an operator runs it on one machine: no broker configured, so it starts its own for the run
    (and never shares topics with the session's pipeline)."""
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"}
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    return env


def test_run_imports_files_and_prints_one_json_notification_per_file(settings, engine, tmp_path):
    d = unique_domain()
    good = tmp_path / "good.csv"
    good.write_text(f"firstName,email\nAnn,ann@{d}\nBen,ben@{d}\n")
    messy = tmp_path / "messy.csv"
    messy.write_text(f"firstName;email\nCy;cy@{d}\n;nofirst@{d}\n", encoding="cp1252")

    done = subprocess.run([*CLI, "run", str(good), str(messy), "--json"], env=_env(settings, tmp_path),
                          capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr[-2000:]
    notes = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(n["file_name"], n["status"], n["created"], n["rejected"]) for n in notes] == [
        ("good.csv", "completed", 2, 0),
        ("messy.csv", "completed_with_errors", 1, 1),
    ]


def test_run_exits_non_zero_when_a_file_is_rejected_whole(settings, engine, tmp_path):
    bad = tmp_path / "report.csv"
    bad.write_bytes(b"%PDF-1.7\n...")
    done = subprocess.run([*CLI, "run", str(bad)], env=_env(settings, tmp_path), capture_output=True, text=True, timeout=180)
    assert done.returncode == 1
    assert "PDF" in done.stdout and "report.csv" in done.stdout


def test_run_names_a_missing_file(tmp_path):
    done = subprocess.run([*CLI, "run", str(tmp_path / "nope.csv")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "nope.csv" in done.stderr


def test_broker_prints_its_address_serves_kafka_and_stops_cleanly():
    process = subprocess.Popen([*CLI, "broker"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line), line
        host, port = line.split(":")
        with socket.create_connection((host, int(port)), timeout=5):
            pass
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    time.sleep(0.5)
    refused = subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], capture_output=True)
    assert refused.returncode != 0, "the broker's port still answers after the command stopped"


def test_serve_refuses_an_unknown_service(settings, tmp_path):
    done = subprocess.run([*CLI, "serve", "mailer"], env=_env(settings, tmp_path), capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "mailer" in done.stderr


def test_jobs_lists_an_import_and_errors_writes_its_fixable_report(settings, engine, tmp_path):
    d = unique_domain()
    messy = tmp_path / "messy.csv"
    messy.write_text(f"firstName,email,lastName\nOk,ok@{d},Fine\n,broken@{d},=1+1\n")
    env = _env(settings, tmp_path)
    assert subprocess.run([*CLI, "run", str(messy)], env=env, capture_output=True, timeout=180).returncode == 0

    listed = subprocess.run([*CLI, "jobs", "--json"], env=env, capture_output=True, text=True, timeout=60)
    job = json.loads(listed.stdout.splitlines()[0])
    assert (job["file_name"], job["status"], job["created"], job["rejected"]) == ("messy.csv", "completed_with_errors", 1, 1)

    report = tmp_path / "fix-me.csv"
    written = subprocess.run([*CLI, "errors", job["job_id"], "-o", str(report)], env=env, capture_output=True, text=True, timeout=60)
    assert written.returncode == 0
    rows = list(csv.reader(report.read_text(encoding="utf-8-sig").splitlines()))
    assert rows[0] == ["firstName", "email", "lastName", "row", "line", "errors"]
    assert rows[1][:5] == ["", f"broken@{d}", "'=1+1", "2", "3"]


async def test_watch_shows_every_job_live_as_it_ends(settings, partner):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "COLUMNS": "200"}
    watcher = await asyncio.create_subprocess_exec(*CLI, "watch", env=env, stdout=asyncio.subprocess.PIPE)
    try:
        first = await asyncio.wait_for(watcher.stdout.readline(), timeout=60)
        assert first.decode().startswith("watching every job")
        note = await partner.run(f"firstName,email\nWat,wat@{unique_domain()}\n")
        lines: list[str] = []
        while not any("created" in line and note.job_id in line for line in lines):
            lines.append((await asyncio.wait_for(watcher.stdout.readline(), timeout=30)).decode())
    finally:
        watcher.terminate()
        await watcher.wait()
    mine = [line for line in lines if note.job_id in line]
    assert "processing" in mine[0] or "completed" in mine[0]
    assert "clients.csv imported: 1 created" in mine[-1]


def test_serve_without_a_token_says_what_to_do_in_one_line(settings, tmp_path):
    env = {**_env(settings, tmp_path), "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers}
    env.pop("API_TOKEN", None)
    done = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "API_TOKEN" in done.stderr


def test_jobs_on_a_database_no_service_used_yet_lists_nothing(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"}
    done = subprocess.run([*CLI, "jobs", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout) == (0, "")


async def test_watch_on_a_job_that_already_ended_prints_its_outcome(settings, partner, tmp_path):
    note = await partner.run(f"firstName,email\nEnd,end@{unique_domain()}\n")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "COLUMNS": "200"}
    watcher = await asyncio.create_subprocess_exec(*CLI, "watch", note.job_id, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(watcher.communicate(), timeout=60)
    assert watcher.returncode == 0
    assert f"job {note.job_id} already ended: completed — 1 created" in out.decode()


async def test_watch_on_a_job_still_running_follows_it_to_its_notification(settings, partner):
    """Watched from the moment it is sent: it ends while `watch` starts, and `watch` still sees its end."""
    d = unique_domain()
    rows = "".join(f"Run{i},run{i}@{d}\n" for i in range(3000))
    request = partner.request(f"firstName,email\n{rows}")
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "COLUMNS": "200"}
    await partner.client.submit(request)
    watcher = await asyncio.create_subprocess_exec(*CLI, "watch", request.job_id, env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await asyncio.wait_for(watcher.communicate(), timeout=90)
    assert watcher.returncode == 0, out
    assert ("already ended: completed — 3000 created" in out.decode()
            or "clients.csv imported: 3000 created" in out.decode()), out.decode()


async def test_watch_sees_a_job_that_ends_while_it_asks_the_database(settings, partner, monkeypatch, capsys):
    """The race `watch JOB` once lost: the job ends after the database said "running" and before the topic
    is read from its end. Listening first, the notification is in what it reads."""
    from clients_import import operator

    request = partner.request(f"firstName,email\nLate,late@{unique_domain()}\n")
    asked = []

    async def running_then_it_ends(_settings, job_id):
        asked.append(job_id)
        if len(asked) == 1:  # before listening: running
            return {"status": JobStatus.PROCESSING.value}
        if len(asked) == 2:  # the answer of a moment ago: still running; by the time it is read, it has ended
            await partner.client.submit(request)
            await partner.client.wait([job_id], timeout=60)
            return {"status": JobStatus.PROCESSING.value}
        raise AssertionError("watch asked the database again instead of following the topic")

    monkeypatch.setattr(operator, "_job_document", running_then_it_ends)
    await asyncio.wait_for(operator.watch(settings, request.job_id), timeout=30)
    assert "clients.csv imported: 1 created" in capsys.readouterr().out


async def test_watch_on_a_job_no_service_has_heard_of_says_so_and_ends(settings):
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url}
    watcher = await asyncio.create_subprocess_exec(*CLI, "watch", "no-such-job", env=env, stderr=asyncio.subprocess.PIPE,
                                                   stdout=asyncio.subprocess.DEVNULL)
    _, err = await asyncio.wait_for(watcher.communicate(), timeout=90)
    assert watcher.returncode == 2
    assert "no import with id no-such-job" in err.decode() and "none appeared within 30 s" in err.decode()


async def test_serve_api_alone_is_a_service_of_its_own_whose_uploads_the_stages_import(settings, pipeline, tmp_path):
    """`serve api` consumes nothing: the session's stages (another process's, for the API) import what it takes."""
    import httpx

    from clients_import.local_kafka import free_port

    from ..conftest import API_TOKEN

    port = free_port()
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "API_TOKEN": API_TOKEN, "API_PORT": str(port), "GROUP_PREFIX": settings.group_prefix}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        server = subprocess.Popen([*CLI, "serve", "api"], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {API_TOKEN}"}
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            d = unique_domain()
            taken = await http.post("/imports", files={"file": ("solo.csv", f"firstName,email\nSolo,solo@{d}\n", "text/csv")},
                                    headers=auth)
            assert taken.status_code == 202, taken.text
            for _ in range(200):
                job = (await http.get(taken.json()["status_url"], headers=auth)).json()
                if job["status"] not in ("received", "processing"):
                    break
                await asyncio.sleep(0.1)
        assert (job["status"], job["created"]) == ("completed", 1), log.read_text(errors="replace")[-2000:]
        assert "serving api on" in log.read_text(errors="replace")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


async def test_run_refuses_to_join_the_services_already_running_on_the_broker(settings, pipeline, tmp_path):
    """`run` runs the stages itself; on a broker where `serve` runs them it would join their consumer groups
    and sign job ids with a key they do not know: it says where to send the file instead."""
    path = tmp_path / "clients.csv"
    path.write_text(f"firstName,email\nAnn,ann@{unique_domain()}\n")
    code, _, err, _ = await run_cli(operator_env(settings), "run", str(path), timeout=60)
    assert code == 2 and "already run" in err and "POST /imports" in err


def test_retry_imports_the_fixed_rows_of_an_import_under_their_row_numbers(tmp_path):
    """run, errors, retry: as an operator fixes an import's rejected rows (each command with a broker of its own)."""
    d = unique_domain()
    env = _env(None, tmp_path)
    people = tmp_path / "people.csv"
    people.write_text(f"firstName,email\nAnn,ann@{d}\nBob,bob@\n,cy@{d}\n")
    first = subprocess.run([*CLI, "run", str(people), "--json"], env=env, capture_output=True, text=True, timeout=180)
    job = json.loads(first.stdout)["job_id"]
    errors = tmp_path / "people-errors.csv"
    subprocess.run([*CLI, "errors", job, "-o", str(errors)], env=env, check=True, capture_output=True, timeout=60)
    errors.write_text(errors.read_text(encoding="utf-8-sig").replace("bob@", f"bob@{d}", 1), encoding="utf-8")

    done = subprocess.run([*CLI, "retry", job, str(errors), "--json"], env=env, capture_output=True, text=True,
                          timeout=180)
    shown = subprocess.run([*CLI, "retry", job, str(errors)], env=env, capture_output=True, text=True, timeout=180)

    assert done.returncode == 0, done.stderr[-2000:]
    note = json.loads(done.stdout)
    assert (note["retry_of"], note["created"], note["rejected"]) == (job, 1, 1)
    assert [(e["row"], e["code"]) for e in note["errors"]] == [(3, "missing_first_name")]
    # the same file again: row 2 was fixed by the first retry, row 3 is still rejected
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert f"a retry of job {job}" in shown.stdout and "row 2 (line" in shown.stdout and "earlier retry" in shown.stdout
    gone = subprocess.run([*CLI, "retry", "no-such-job", str(errors)], env=env, capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and "unknown_import" in gone.stderr
