"""`make bench`: the pipeline's speed on a warm local broker, against the same stages with no Kafka.

Prints: the median and worst time of a 5000-row file from submit to notification (5 runs); the
rows per second of 20 such files submitted back to back; the same rows validated and upserted
through the same stages on the in-memory runner into the same kind of database; and the ratio.
"""

import argparse
import asyncio
import base64
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients_import.client import ImportClient  # noqa: E402
from clients_import.local_kafka import LocalKafka  # noqa: E402
from clients_import.pipeline import Pipeline  # noqa: E402
from clients_import.topology import STAGE_NAMES  # noqa: E402
from shared import jobs, topics  # noqa: E402
from shared.events import ImportNotification, ImportRequest, Source  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import Settings  # noqa: E402

ROWS, RUNS, FILES = 5000, 5, 20
TARGET_MEDIAN_S, TARGET_ROWS_PER_S, TARGET_RATIO = 1.5, 15_000, 0.40


def csv_file(rows: int, tag: str) -> bytes:
    lines = ["firstName,lastName,email,project,desk,type"]
    lines += [f"First{i},Last{i},user{i}.{tag}@bench.example.com,,sales,personal" for i in range(rows)]
    return ("\n".join(lines) + "\n").encode()


def request(data: bytes, signing_key: str) -> ImportRequest:
    job_id = str(uuid.uuid4())
    return ImportRequest(
        job_id=job_id, job_signature=jobs.sign(signing_key, job_id), requested_by="bench", source=Source.CLI,
        file_name="bench.csv", content_base64=base64.b64encode(data).decode(),
    )


async def one_file(client: ImportClient) -> float:
    req = request(csv_file(ROWS, uuid.uuid4().hex[:8]), client.settings.signing_key)
    started = time.perf_counter()
    await client.submit(req)
    note = (await client.wait([req.job_id], timeout=300))[req.job_id]
    elapsed = time.perf_counter() - started
    assert note.created == ROWS, note
    return elapsed


async def back_to_back(client: ImportClient) -> float:
    requests = [request(csv_file(ROWS, uuid.uuid4().hex[:8]), client.settings.signing_key) for _ in range(FILES)]
    started = time.perf_counter()
    for req in requests:
        await client.submit(req)
    notes = await client.wait([r.job_id for r in requests], timeout=600)
    elapsed = time.perf_counter() - started
    assert sum(n.created for n in notes.values()) == ROWS * FILES
    return ROWS * FILES / elapsed


async def direct(database_url: str, settings: Settings) -> float:
    """The same stages with no Kafka: the topology on the in-memory runner, into the same kind of database."""
    memory = settings.model_copy(update={"database_url": database_url, "kafka_bootstrap_servers": None})
    files = [csv_file(ROWS, uuid.uuid4().hex[:8]) for _ in range(FILES)]
    async with Pipeline(memory, in_memory=True) as pipeline:
        started = time.perf_counter()
        for data in files:
            req = request(data, memory.signing_key)
            await pipeline.broker.publish(req.model_dump_json().encode(), topics.REQUESTS, key=req.job_id.encode())
        elapsed = time.perf_counter() - started
        notes = [ImportNotification.model_validate_json(r.value) for r in pipeline.seen[topics.NOTIFICATIONS]]
    assert sum(n.created for n in notes) == ROWS * FILES, notes
    await pipeline.engine.dispose()
    return ROWS * FILES / elapsed


@contextlib.asynccontextmanager
async def services(settings: Settings, processes: bool):
    """All four services in this process, or each in a process of its own (as `clients-import serve`)."""
    if not processes:
        async with Pipeline(settings):
            yield
        return
    await ensure_topics(settings)  # before the client below looks for them: the services start slower than it
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": settings.database_url, "GROUP_PREFIX": settings.group_prefix, "LOG_LEVEL": "WARNING",
           "JOB_SIGNING_SECRET": settings.signing_key}
    workers = [subprocess.Popen([sys.executable, "-m", "clients_import.cli", "serve", name], env=env,
                                stdout=subprocess.DEVNULL) for name in STAGE_NAMES]
    try:
        await asyncio.sleep(3)  # the warm-up file below waits for them anyway
        yield
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)


async def main(bootstrap: str, workdir: Path, processes: bool) -> None:
    settings = Settings(kafka_bootstrap_servers=bootstrap, database_url=f"sqlite+aiosqlite:///{workdir / 'pipeline.db'}",
                        group_prefix=f"bench-{uuid.uuid4().hex[:6]}", job_signing_secret=uuid.uuid4().hex,
                        _env_file=None)
    async with services(settings, processes), ImportClient(settings) as client:
        await one_file(client)  # warm: topics, groups, JIT, caches
        latencies = [await one_file(client) for _ in range(RUNS)]
        pipeline_rate = await back_to_back(client)
    direct_rate = await direct(f"sqlite+aiosqlite:///{workdir / 'direct.db'}", settings)
    median, worst = statistics.median(latencies), max(latencies)
    ratio = pipeline_rate / direct_rate
    layout = "one process per service" if processes else "all four services in one process"
    print(f"\nclients-import bench: SQLite, {os.cpu_count()} cores, {layout}")
    print(f"  {ROWS}-row file, submit to notification ({RUNS} runs): median {median:.2f} s, worst {worst:.2f} s"
          f"   target median <= {TARGET_MEDIAN_S} s  {_mark(median <= TARGET_MEDIAN_S)}")
    print(f"  {FILES} files x {ROWS} rows back to back: {pipeline_rate:,.0f} rows/s"
          f"   target >= {TARGET_ROWS_PER_S:,} rows/s  {_mark(pipeline_rate >= TARGET_ROWS_PER_S)}")
    print(f"  in-memory runner (the same stages, no Kafka): {direct_rate:,.0f} rows/s")
    print(f"  pipeline / in-memory: {ratio:.0%}   target >= {TARGET_RATIO:.0%}  {_mark(ratio >= TARGET_RATIO)}")


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__)
    cli.add_argument("--in-process", action="store_true", help="all four services in this process, as `run` does")
    args = cli.parse_args()
    args.processes = not args.in_process
    with tempfile.TemporaryDirectory(prefix="clients-import-bench-") as tmp:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            asyncio.run(main(os.environ["KAFKA_BOOTSTRAP_SERVERS"], Path(tmp), args.processes))
        else:
            with LocalKafka() as kafka:
                asyncio.run(main(kafka.bootstrap, Path(tmp), args.processes))
