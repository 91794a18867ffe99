"""An undo survives a writer killed in the middle of it: on a broker of its own, the writer is a
`clients-import serve writer` process, killed with SIGKILL once part of the undo is committed and
started again. The undo then ends once, with every row taken back once and counted once."""

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid

from sqlalchemy import func, select

from clients_import.client import ImportClient
from clients_import.local_kafka import LocalKafka
from clients_import.pipeline import Pipeline
from shared import jobs, topics
from shared.db import create_engine, create_tables, reading
from shared.events import ImportRequest, JobStatus, Source
from shared.kafka import ensure_topics
from shared.tables import clients, row_outcomes

from .command_line import operator_env
from .kafka_tools import of_job, read_topic

ROWS = 4000
PARTITIONS = 8  # eight shares of about 500 rows: one transaction each
BUDGET_S = 150.0


def signed(settings, **fields) -> ImportRequest:
    job_id = str(uuid.uuid4())
    return ImportRequest(job_id=job_id, job_signature=jobs.sign(settings.signing_key, job_id), requested_by="crash",
                         source=Source.CLI, **fields)


def start_writer(settings, tmp_path) -> subprocess.Popen:
    env = operator_env(settings, INSTANCE_NAME="undo-crash-writer", TOPIC_PARTITIONS=str(settings.topic_partitions))
    log = (tmp_path / "writer.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "clients_import.cli", "serve", "writer"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp_path)


async def undone_rows(engine, job_id: str) -> int:
    async with reading(engine).connect() as conn:  # beside the writer's transactions, never behind them
        return await conn.scalar(select(func.count()).select_from(row_outcomes).where(row_outcomes.c.job_id == job_id))


async def test_an_undo_survives_its_writer_killed_mid_way(settings, tmp_path):
    d = f"crash{uuid.uuid4().hex[:8]}.example.com"
    with LocalKafka(max_message_bytes=settings.request_max_bytes) as kafka:
        mine = settings.model_copy(update={
            "kafka_bootstrap_servers": kafka.bootstrap, "topic_partitions": PARTITIONS, "job_deadline_s": 120,
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}", "group_prefix": f"undo-crash-{d[:13]}"})
        engine = create_engine(mine.database_url)
        await create_tables(engine)
        await ensure_topics(mine)
        writer = start_writer(mine, tmp_path)
        try:
            async with asyncio.timeout(BUDGET_S), Pipeline(mine, ("uploader", "validator", "notifier"), engine=engine), \
                    ImportClient(mine) as client:
                text = "firstName,email\n" + "".join(f"N{i},n{i}@{d}\n" for i in range(ROWS))
                original = signed(mine, file_name="many.csv", content_base64=base64.b64encode(text.encode()).decode())
                await client.submit(original)
                imported = (await client.wait([original.job_id], 120))[original.job_id]
                assert imported.created == ROWS

                undo = signed(mine, undo_of=original.job_id)
                await client.submit(undo)
                while (done := await undone_rows(engine, undo.job_id)) == 0:
                    await asyncio.sleep(0.005)
                writer.kill()  # SIGKILL: no batch finished, no offset committed, no group left
                writer.wait(timeout=10)
                assert done < ROWS, "the writer finished the whole undo before it could be killed"
                killed_at = time.monotonic()
                writer = start_writer(mine, tmp_path)

                note = (await client.wait([undo.job_id], 120))[undo.job_id]
                print(f"killed with {done} of {ROWS} rows undone; finished {time.monotonic() - killed_at:.1f} s later")

            assert (note.status, note.total, note.deleted, note.restored, note.conflicts) == (
                JobStatus.COMPLETED, ROWS, ROWS, 0, 0)
            assert await undone_rows(engine, undo.job_id) == ROWS
            async with engine.connect() as conn:
                left = await conn.scalar(select(func.count()).select_from(clients).where(clients.c.email.like(f"%@{d}")))
            assert left == 0
            notes = of_job(await read_topic(mine, topics.NOTIFICATIONS), undo.job_id)
            assert [json.loads(n.value)["deleted"] for n in notes] == [ROWS]  # one notification, counted once
        finally:
            writer.kill()
            writer.wait(timeout=10)
            await engine.dispose()
