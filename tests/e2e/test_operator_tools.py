"""`clients-import status` and `clients-import dlq`, run as an operator runs them, on the session's real broker.

The session's pipeline and other tests share the broker and the DLQ: these tests run pipelines of their
own (a group prefix and a database of their own, their groups started at the current end of every topic so
they never replay the session's history), and look only at their own records (keys unique per test).
"""

import asyncio
import json
import os
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import select, text

from clients_import.client import ImportClient
from clients_import.pipeline import Pipeline
from services.validator.routing import partition_for
from shared import topics
from shared.db import create_engine, create_tables
from shared.events import AcceptedRow, ClientValues, JobStatus, Mode, RowsAccepted, Source
from shared.settings import Settings
from shared.tables import import_jobs, row_outcomes

from .command_line import operator_env, run_cli
from .conftest import Partner, clients_of, unique_domain
from .kafka_tools import start_groups_at_the_end

CLI = [sys.executable, "-m", "clients_import.cli"]
ROOT = Path(__file__).parents[2]


def _own(settings: Settings, tmp_path: Path, **changes) -> Settings:
    """The session's broker, with a group prefix and a database of this test's own."""
    return settings.model_copy(update={"group_prefix": f"ops-{uuid.uuid4().hex[:8]}",
                                       "database_url": f"sqlite+aiosqlite:///{tmp_path / 'ops.db'}", **changes})


async def _cli(settings: Settings, *args: str, timeout: float = 90) -> tuple[int, str, str]:
    code, out, err, _ = await run_cli(operator_env(settings), *args, timeout=timeout)
    return code, out, err


async def _status(settings: Settings) -> tuple[int, dict]:
    code, out, err = await _cli(settings, "status", "--json", "--newest", "5")
    assert code in (0, 1), err[-2000:]
    return code, json.loads(out)


def _group(document: dict, stage: str) -> dict:
    return next(g for g in document["groups"] if g["stage"] == stage)


async def _until(check, what: str, timeout: float = 60, every: float = 0.5):
    """Poll `check` (async, returning something truthy when done) until it holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if done := await check():
            return done
        await asyncio.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s; last seen: {_seen[-1:]}")


_seen: list = []  # the last status document a poll saw, for the failure message


async def test_status_shows_a_stages_lag_while_nothing_runs_it_and_none_once_it_has_caught_up(settings, engine, tmp_path):
    mine = _own(settings, tmp_path, job_deadline_s=600)
    await start_groups_at_the_end(mine)
    own_engine = create_engine(mine.database_url)
    try:
        async with Pipeline(mine, services=("uploader", "validator", "notifier"), engine=own_engine), \
                ImportClient(mine) as client:
            d = unique_domain()
            request = Partner(client, mine.signing_key).request(
                "firstName,email\n" + "".join(f"L{i},l{i}@{d}\n" for i in range(30)))
            await client.submit(request)

            async def writer_lags():
                code, document = await _status(mine)
                _seen.append(document)
                return (code, document) if _group(document, "writer")["lag"] > 0 else None

            code, document = await _until(writer_lags, "the writer's group never showed lag")
            writer = _group(document, "writer")
            assert code == 1 and not document["healthy"]
            assert writer["members"] == [] and writer["group"] == f"{mine.group_prefix}.writer"
            assert {p["topic"] for p in writer["partitions"] if p["lag"]} == {topics.ROWS_ACCEPTED}
            assert sum(p["lag"] for p in writer["partitions"]) == writer["lag"]
            assert any("writer" in p and "no member" in p for p in document["problems"]), document["problems"]
            assert all(g["members"] for g in document["groups"] if g["stage"] != "writer")
            # (The job itself may well complete meanwhile: the session's own writer, if it runs, writes the same rows
            # and the test's notifier counts them. Jobs have a test of their own below.)

            code, human, _ = await _cli(mine, "status")
            assert code == 1
            assert "Unhealthy" in human and f"nothing runs the writer: its group {mine.group_prefix}.writer" in human

            async with Pipeline(mine, services=("writer",), engine=own_engine):
                note = (await client.wait([request.job_id], timeout=60))[request.job_id]
                assert (note.status, note.created) == (JobStatus.COMPLETED, 30)

                async def caught_up():
                    code, document = await _status(mine)
                    _seen.append(document)
                    writer = _group(document, "writer")
                    return (code, document) if writer["members"] and writer["lag"] == 0 else None

                code, document = await _until(caught_up, "the writer never caught up")
                assert all(p["lag"] == 0 for p in _group(document, "writer")["partitions"])
                assert not any("writer" in p for p in document["problems"]), document["problems"]
                if all(g["lag"] == 0 for g in document["groups"]) and document["jobs"]["oldest"] is None:
                    assert (code, document["healthy"], document["problems"]) == (0, True, [])
    finally:
        await own_engine.dispose()


async def test_status_names_a_job_unfinished_past_half_its_deadline(settings, engine, tmp_path):
    mine = _own(settings, tmp_path, job_deadline_s=600)
    own_engine = create_engine(mine.database_url)
    job_id = f"ops-stuck-{uuid.uuid4()}"
    try:
        await create_tables(own_engine)
        async with own_engine.begin() as conn:
            await conn.execute(import_jobs.insert().values(
                id=job_id, file_name="[b]stuck[/b].csv", source=Source.TOPIC.value, requested_by="e2e", mode=Mode.UPSERT.value,
                status=JobStatus.PROCESSING.value, received_at=datetime.now(UTC) - timedelta(seconds=400), warnings=[]))
            await conn.execute(import_jobs.insert().values(
                id=f"{job_id}-new", file_name="new.csv", source=Source.TOPIC.value, requested_by="e2e", mode=Mode.UPSERT.value,
                status=JobStatus.RECEIVED.value, received_at=datetime.now(UTC), warnings=[]))
    finally:
        await own_engine.dispose()
    await start_groups_at_the_end(mine)

    code, document = await _status(mine)
    assert code == 1 and document["jobs"]["unfinished"] == 2
    oldest = document["jobs"]["oldest"]
    assert (oldest["job_id"], oldest["status"], oldest["file_name"]) == (job_id, JobStatus.PROCESSING.value, "[b]stuck[/b].csv")
    assert 400 <= oldest["age_s"] < 500
    assert any(job_id in p and "half its deadline" in p for p in document["problems"]), document["problems"]

    code, human, _ = await _cli(mine, "status")
    assert code == 1 and f"{job_id} ([b]stuck[/b].csv) is still processing after 6 min" in human


async def test_a_dead_letter_is_listed_with_its_reason_and_redriven_once_its_cause_is_fixed(settings, engine, tmp_path):
    """The writer's database loses its clients table: a valid record fails three times and goes to the DLQ.
    Once the table is back, `dlq redrive` sends the record back unchanged; it is written once; a second
    redrive sends nothing."""
    mine = _own(settings, tmp_path)
    started = datetime.now(UTC).isoformat()
    await start_groups_at_the_end(mine)
    own_engine = create_engine(mine.database_url)
    job_id, d = f"ops-dlq-{uuid.uuid4()}", unique_domain()
    email = f"dee@{d}"
    event = RowsAccepted(job_id=job_id, chunk=0, rows=(
        AcceptedRow(row=1, line=2, values=ClientValues(email=email, first_name="Dee"), original={"email": email}),))
    value = event.model_dump_json().encode()
    partition = partition_for(email, mine.topic_partitions)
    try:
        async with Pipeline(mine, services=("writer",), engine=own_engine):
            async with own_engine.begin() as conn:
                await conn.execute(text("DROP TABLE clients"))  # the dependency this test breaks
            producer = AIOKafkaProducer(bootstrap_servers=mine.kafka_bootstrap_servers)
            await producer.start()
            try:
                sent = await producer.send_and_wait(topics.ROWS_ACCEPTED, value, key=job_id.encode(), partition=partition)
            finally:
                await producer.stop()

            async def my_letter():
                code, out, err = await _cli(mine, "dlq", "list", "--json", "--key", job_id, "--since", started)
                assert code == 0, err
                return [json.loads(line) for line in out.splitlines()]

            [letter] = await _until(my_letter, "the record never reached the DLQ")
            assert letter["stage"] == "writer"
            assert letter["original"] == {"topic": topics.ROWS_ACCEPTED, "partition": sent.partition, "offset": sent.offset}
            assert "no such table" in letter["reason"] and letter["reason"].startswith("failed 3 times")
            assert letter["redriven"] is None and not letter["excerpt"]
            place = f"{letter['dlq']['partition']}:{letter['dlq']['offset']}"

            # Filters: by stage and by a piece of the reason in any case; the others leave it out.
            _, out, _ = await _cli(mine, "dlq", "list", "--json", "--key", job_id, "--stage", "writer", "--reason", "NO SUCH TABLE")
            assert len(out.splitlines()) == 1
            _, out, _ = await _cli(mine, "dlq", "list", "--json", "--key", job_id, "--stage", "validator")
            assert out == ""

            code, out, _ = await _cli(mine, "dlq", "show", place, "--json")
            shown = json.loads(out)
            assert code == 0 and shown["value"] == value.decode() and shown["headers"]["dlq.stage"] == "writer"
            code, out, _ = await _cli(mine, "dlq", "show", f"{topics.ROWS_ACCEPTED}:{sent.partition}:{sent.offset}", "--json")
            assert code == 0 and json.loads(out)["dlq"] == letter["dlq"]

            code, out, _ = await _cli(mine, "dlq", "redrive", "--key", job_id, "--dry-run", "--json")
            assert code == 0 and [json.loads(line)["action"] for line in out.splitlines()] == ["would_send"]
            assert await _outcomes(own_engine, job_id) == []

            await create_tables(own_engine)  # the cause, fixed
            code, out, err = await _cli(mine, "dlq", "redrive", "--key", job_id, "--since", started, "--json")
            assert code == 0, err
            [done] = [json.loads(line) for line in out.splitlines()]
            assert done["action"] == "sent" and done["dlq"] == letter["dlq"]
            to = done["to"]
            assert (to["topic"], to["partition"]) == (topics.ROWS_ACCEPTED, sent.partition)  # its own partition again

            found = await _until(lambda: clients_of(own_engine, d), "the redriven record was never written")
            assert list(found) == [email]

            code, out, err = await _cli(mine, "dlq", "redrive", "--key", job_id, "--json")
            assert (code, out) == (0, "") and "1 already redriven" in err
            code, out, _ = await _cli(mine, "dlq", "list", "--json", "--key", job_id)
            [listed] = [json.loads(line) for line in out.splitlines()]
            assert listed["redriven"]["to"] == to
            await asyncio.sleep(1)  # time enough for a second copy to be written, were there one
            assert len(await _outcomes(own_engine, job_id)) == 1 and len(await clients_of(own_engine, d)) == 1
    finally:
        await own_engine.dispose()

    # The redriven record is the original, unchanged, saying where it came from.
    copy = await _read_one(mine, TopicPartition(to["topic"], to["partition"]), to["offset"])
    assert (copy.key, copy.value) == (job_id.encode(), value)
    assert dict(copy.headers)["redrive.from"] == f"{topics.DLQ}:{place}".encode()


async def test_redrive_skips_excerpts_and_letters_from_elsewhere_and_show_never_renders_stored_markup(settings, engine, tmp_path):
    mine = _own(settings, tmp_path)
    key = f"ops-crafted-{uuid.uuid4()}"
    hostile = "[bold red]not markup[/] \x1b[2J\x1b]0;title\x07 \u202eevil"
    producer = AIOKafkaProducer(bootstrap_servers=mine.kafka_bootstrap_servers)
    await producer.start()
    try:
        common = {"dlq.original.partition": "0", "dlq.original.offset": "7", "dlq.stage": "writer", "dlq.reason": hostile}
        await producer.send_and_wait(topics.DLQ, b"{" * 100, key=key.encode(), headers=_headers(
            {**common, "dlq.original.topic": topics.ROWS_ACCEPTED, "dlq.excerpt": "true", "dlq.original.size": "99999999"}))
        elsewhere = await producer.send_and_wait(topics.DLQ, hostile.encode(), key=key.encode(), headers=_headers(
            {**common, "dlq.original.topic": "somewhere.else"}))
    finally:
        await producer.stop()

    code, out, err = await _cli(mine, "dlq", "redrive", "--key", key, "--json")
    assert code == 0, err
    done = [json.loads(line) for line in out.splitlines()]
    assert [d["action"] for d in done] == ["skipped", "skipped"]
    assert "excerpt" in done[0]["why"] and "somewhere.else" in done[1]["why"]

    code, human, _ = await _cli(mine, "dlq", "redrive", "--key", key)
    assert code == 0 and "excerpt" in human and "sent 0" in human

    code, shown, _ = await _cli(mine, "dlq", "show", f"{elsewhere.partition}:{elsewhere.offset}")
    assert code == 0
    assert "[bold red]not markup[/]" in shown  # printed as it is, not as markup
    assert "\x1b" not in shown and "\x07" not in shown and "\u202e" not in shown
    assert "\\x1b[2J" in shown

    code, _, err = await _cli(mine, "dlq", "show", "nonsense")
    assert code == 2 and "PARTITION:OFFSET" in err


async def test_the_commands_need_a_broker_and_say_so_in_one_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    for args in (["status"], ["dlq", "list"], ["dlq", "show", "0:0"], ["dlq", "redrive", "--dry-run"]):
        process = await asyncio.create_subprocess_exec(*CLI, *args, env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE,
                                                       stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(process.communicate(), 60)
        assert process.returncode == 2, args
        assert err.decode().strip().count("\n") == 0 and "KAFKA_BOOTSTRAP_SERVERS" in err.decode()


async def _outcomes(engine, job_id: str) -> list:
    async with engine.connect() as conn:
        return (await conn.execute(select(row_outcomes).where(row_outcomes.c.job_id == job_id))).all()


def _headers(values: dict[str, str]) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in values.items()]


async def _read_one(settings: Settings, tp: TopicPartition, offset: int):
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, offset)
        return await asyncio.wait_for(consumer.getone(tp), 30)
    finally:
        await consumer.stop()
