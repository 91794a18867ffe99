"""`make bench-stages`: each stage's own CPU per 100,000 rows, with no broker and no other process.

A diagnostic beside `make bench` (which measures the pipeline as deployed): the records of 20 files of
5000 rows are made once on the in-memory runner, then each stage's consumer (its `StageRunner`, so
decoding, the handler, the database and encoding its publications) is run again over exactly the
records it consumed, in batches of the size its real consumer fetches, into a fresh SQLite database.
Its process CPU time (`time.process_time`, all threads) is what the stage costs, undisturbed by the
others sharing the cores; beside it, the time the replay took (less than the CPU where the stage's
Python and its database's thread work at the same time). `--profile NAME` prints cProfile's top functions for one stage.
"""

import argparse
import asyncio
import cProfile
import os
import pstats
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench import FILES, ROWS, csv_file, request  # noqa: E402
from clients_import import collector  # noqa: E402
from clients_import.pipeline import Pipeline  # noqa: E402
from clients_import.topology import STAGES  # noqa: E402
from shared import topics  # noqa: E402
from shared.db import create_engine, create_tables  # noqa: E402
from shared.readback import MemoryPublishedLog  # noqa: E402
from shared.settings import Settings  # noqa: E402
from shared.stage import StageRunner  # noqa: E402

# The batch a real consumer hands over when a backlog waits (FastStream's default max_records is 500).
_DEFAULT_BATCH = 500


async def recorded(settings: Settings, workdir: Path) -> dict[str, list]:
    """Every record the whole pipeline publishes for FILES files, by topic, from the in-memory runner."""
    memory = settings.model_copy(update={"database_url": f"sqlite+aiosqlite:///{workdir / 'record.db'}",
                                         "kafka_bootstrap_servers": None})
    async with Pipeline(memory, in_memory=True) as pipeline:
        for _ in range(FILES):
            req = request(csv_file(ROWS, uuid.uuid4().hex[:8]), memory.signing_key)
            await pipeline.broker.publish(req.model_dump_json().encode(), topics.REQUESTS, key=req.job_id.encode())
        seen = {topic: list(records) for topic, records in pipeline.seen.items()}
    await pipeline.engine.dispose()
    return seen


async def replay(stage, seen: dict[str, list], settings: Settings, database: Path, profile: bool) -> tuple[float, float]:
    """CPU seconds the stage's consumer spends on the records it consumed, in its real batch size, and the
    seconds it took (less than its CPU when its Python and its database work at the same time)."""
    engine = create_engine(f"sqlite+aiosqlite:///{database}")
    await create_tables(engine)
    published: dict[str, list] = {topic: [] for topic in topics.ALL}

    async def publish(publications) -> None:
        for p in publications:
            p.encoded()  # what the producer would be handed

    async def dead_letter(letters) -> None:
        raise AssertionError(f"{stage.name} dead-lettered {len(letters)} record(s): {letters[0].reason}")

    async def healthy() -> bool:
        return True

    extra = {"published": MemoryPublishedLog(published)} if stage.reads_back else {}
    ports = stage.ports(settings.model_copy(update={"database_url": str(engine.url)}), engine, publish, **extra)
    runner = StageRunner(stage, ports, publish, dead_letter, healthy)
    batch = stage.max_records or _DEFAULT_BATCH
    records = [r for topic in stage.consumes for r in seen[topic]]  # jobs before rows, as they arrive
    collector.tune_after_start()  # as `serve` does once started
    profiler = cProfile.Profile() if profile else None
    started, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for start in range(0, len(records), batch):
        with collector.batch():  # as the pipeline's consumer does
            await runner.run(records[start : start + batch])
    if profiler:
        profiler.disable()
    spent, wall = time.process_time() - started, time.perf_counter() - wall
    await engine.dispose()
    if profiler:
        pstats.Stats(profiler).sort_stats(os.environ.get("BENCH_SORT", "tottime")).print_stats(int(os.environ.get("BENCH_TOP", "25")))
    return spent, wall


async def main(args: argparse.Namespace) -> None:
    settings = Settings(job_signing_secret=uuid.uuid4().hex, _env_file=None)
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        workdir = Path(tmp)
        seen = await recorded(settings, workdir)
        print(f"clients-import bench-stages: {FILES} files x {ROWS} rows, each stage alone, SQLite")
        total = 0.0
        for stage in STAGES:
            if args.stage and stage.name != args.stage:
                continue
            spent, wall = await replay(stage, seen, settings, workdir / f"{stage.name}.db", args.profile == stage.name)
            per_100k = spent / (FILES * ROWS) * 100_000
            total += per_100k
            print(f"  {stage.name:<10} {per_100k:6.2f} CPU s per 100,000 rows, in {wall / (FILES * ROWS) * 100_000:.2f} s")
        print(f"  {'stages':<10} {total:6.2f} CPU s per 100,000 rows (no broker, no Kafka client)")


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--stage", help="only this stage")
    cli.add_argument("--profile", metavar="STAGE", help="cProfile this stage's replay")
    asyncio.run(main(cli.parse_args()))
