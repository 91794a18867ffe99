"""`make bench`: the pipeline's speed on a warm local broker, against the floor of the same work.

Prints, in one run: the floor (bench/floor.py: the same import as the shortest honest one-process
program, on the same kind of files); the median and worst time of a 5000-row file from submit to
notification (5 runs); the rows per second of 20 such files submitted back to back, and its ratio to
the floor; and, for the back-to-back run, each process's CPU seconds per 100,000 rows and peak RSS
(services, broker, and PostgreSQL when used). Each service runs in a process of its own, as `serve`
deploys them. Against the targets of issue 12.

Options: `--database postgresql` (a throwaway local cluster, as the tests start), `--writers N` (N writer
processes), `--profile DIR` (a py-spy profile of each service during the back-to-back run: DIR/NAME.txt,
collapsed stacks, and a summary printed), `--direct` (also the same stages on the in-memory runner),
`--in-process` (all four services in this process, as `run` does), `--ceiling` (the writer answers
without its database, bench/ceiling_writer.py: what the rest of the pipeline carries, a diagnostic).
"""

import argparse
import asyncio
import base64
import collections
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from floor import floor_rate  # noqa: E402

from clients_import.client import ImportClient  # noqa: E402
from clients_import.local_kafka import LocalKafka  # noqa: E402
from clients_import.pipeline import Pipeline  # noqa: E402
from clients_import.topology import STAGE_NAMES  # noqa: E402
from shared import jobs, topics  # noqa: E402
from shared.events import ImportNotification, ImportRequest, Source  # noqa: E402
from shared.kafka import ensure_topics  # noqa: E402
from shared.settings import Settings  # noqa: E402

ROWS, RUNS, FILES = 5000, 5, 20
TARGET_MEDIAN_S, TARGET_ROWS_PER_S, TARGET_FLOOR_RATIO, TARGET_RSS_MB = 0.5, 25_000, 0.50, 250


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


# -- per process: CPU and peak memory (Linux /proc) --------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process and its waited-for children have used."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def reset_peak_rss(pid: int) -> None:
    """From now on, VmHWM is the peak since this moment (Linux: 5 to clear_refs)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def peak_rss_mb(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tree(pid: int) -> list[int]:
    """A process and all its descendants (PostgreSQL's backends)."""
    children = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children[parent].append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        found.append(todo.pop())
        todo += children[found[-1]]
    return found


class Meter:
    """CPU seconds and peak RSS of each named process (a name may stand for a tree of processes) over a phase."""

    def __init__(self, processes: dict[str, int], trees: frozenset[str] = frozenset()) -> None:
        self.processes, self.trees = processes, trees
        self.cpu: dict[str, float] = {}
        self.rss: dict[str, float] = {}

    def _pids(self, name: str) -> list[int]:
        return tree(self.processes[name]) if name in self.trees else [self.processes[name]]

    def _cpu(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in self._pids(name)) for name in self.processes}

    def __enter__(self) -> "Meter":
        for name in self.processes:
            for pid in self._pids(name):
                reset_peak_rss(pid)
        self.start = self._cpu()
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu = {name: used - self.start[name] for name, used in self._cpu().items()}
        self.rss = {name: max(peak_rss_mb(pid) for pid in self._pids(name)) for name in self.processes}


# -- profiles ------------------------------------------------------------------------------------------------


def start_profiles(processes: dict[str, int], folder: Path) -> list[subprocess.Popen]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    folder.mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([spy, "record", "--nonblocking", "-r", "200", "-f", "raw", "-p", str(pid),
                              "-o", str(folder / f"{name}.txt")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, pid in processes.items()]


def stop_profiles(spies: list[subprocess.Popen]) -> None:
    for spy in spies:
        spy.send_signal(2)  # py-spy writes its profile on SIGINT
    for spy in spies:
        spy.wait(timeout=60)


def profile_summary(path: Path, top: int = 12) -> str:
    """The functions where a service spent its samples (self time), largest first."""
    own: collections.Counter = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        frames = stack.split(";")
        if "select" in frames[-1] or "epoll" in frames[-1]:
            continue  # idle: waiting for the broker or the database
        total += int(count)
        own[_short(frames[-1])] += int(count)
    lines = [f"    {n / total:5.1%}  {frame}" for frame, n in own.most_common(top)] if total else []
    return "\n".join(lines)


def _short(frame: str) -> str:
    name, _, where = frame.partition(" (")
    where = where.rstrip(")").replace(str(Path(sys.prefix)), "").split("site-packages/")[-1].rsplit(":", 1)[0]
    return f"{name} ({where})"  # the function, whichever of its lines


# -- the services ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def services(settings: Settings, processes: bool, writers: int, ceiling: bool = False):
    """All four services in this process, or each in a process of its own (as `clients-import serve`): name -> pid."""
    if not processes:
        async with Pipeline(settings):
            yield {"all four services": os.getpid()}
        return
    await ensure_topics(settings)  # before the client below looks for them: the services start slower than it
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
           "DATABASE_URL": settings.database_url, "GROUP_PREFIX": settings.group_prefix, "LOG_LEVEL": "WARNING",
           "JOB_SIGNING_SECRET": settings.signing_key}
    names = [n for name in STAGE_NAMES for n in ([f"writer{i + 1}" for i in range(writers)] if name == "writer" and writers > 1
                                                else [name])]
    def command(name: str) -> list[str]:
        if ceiling and name.startswith("writer"):
            return [sys.executable, str(Path(__file__).resolve().parent / "ceiling_writer.py")]
        return [sys.executable, "-m", "clients_import.cli", "serve", name.rstrip("0123456789")]

    workers = {name: subprocess.Popen(command(name), env=env, stdout=subprocess.DEVNULL) for name in names}
    try:
        await asyncio.sleep(3)  # the warm-up file below waits for them anyway
        yield {name: worker.pid for name, worker in workers.items()}
    finally:
        for worker in workers.values():
            worker.terminate()
        for worker in workers.values():
            worker.wait(timeout=30)


async def main(bootstrap: str, broker_pid: int | None, workdir: Path, args: argparse.Namespace, database: tuple) -> None:
    database_url, database_pid = database
    settings = Settings(kafka_bootstrap_servers=bootstrap, database_url=database_url,
                        group_prefix=f"bench-{uuid.uuid4().hex[:6]}", job_signing_secret=uuid.uuid4().hex,
                        _env_file=None)
    floor = floor_rate([csv_file(ROWS, uuid.uuid4().hex[:8]) for _ in range(FILES)], workdir / "floor.db")
    load_before = os.getloadavg()[0]
    async with services(settings, not args.in_process, args.writers, args.ceiling) as pids, ImportClient(settings) as client:
        await one_file(client)  # warm: topics, groups, JIT, caches
        latencies = [await one_file(client) for _ in range(RUNS)]
        measured = {**pids, **({"kafka broker": broker_pid} if broker_pid else {}),
                    **({"postgresql": database_pid} if database_pid else {})}
        spies = start_profiles(pids, Path(args.profile)) if args.profile else []
        with Meter(measured, trees=frozenset({"postgresql"})) as meter:
            pipeline_rate = await back_to_back(client)
        if spies:
            stop_profiles(spies)
    direct_rate = await direct(f"sqlite+aiosqlite:///{workdir / 'direct.db'}", settings) if args.direct else None
    median, worst = statistics.median(latencies), max(latencies)
    ratio = pipeline_rate / floor
    kind = "PostgreSQL" if database_pid else "SQLite"
    layout = (f"one process per service, {args.writers} writer{'s' * (args.writers > 1)}" if not args.in_process
              else "all four services in one process")
    if args.ceiling:
        layout += ("; CEILING: the writer answers without its database (bench/ceiling_writer.py), so these figures are what "
                   "the rest of the pipeline carries, not the product's")
    print(f"\nclients-import bench: {kind}, {os.cpu_count()} cores, {layout}; "
          f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after")
    print(f"  floor (bench/floor.py: the same work in one plain process, SQLite, no search index): {floor:,.0f} rows/s")
    print(f"  {ROWS}-row file, submit to notification ({RUNS} runs): median {median:.2f} s, worst {worst:.2f} s"
          f"   target median <= {TARGET_MEDIAN_S} s  {_mark(median <= TARGET_MEDIAN_S)}")
    print(f"  {FILES} files x {ROWS} rows back to back: {pipeline_rate:,.0f} rows/s"
          f"   target >= {TARGET_ROWS_PER_S:,} rows/s  {_mark(pipeline_rate >= TARGET_ROWS_PER_S)}")
    print(f"  pipeline / floor: {ratio:.0%}   target >= {TARGET_FLOOR_RATIO:.0%}  {_mark(ratio >= TARGET_FLOOR_RATIO)}")
    if direct_rate:
        print(f"  in-memory runner (the same stages, no Kafka; a diagnostic): {direct_rate:,.0f} rows/s")
    rows = ROWS * FILES
    wall = rows / pipeline_rate
    print(f"  back to back, per process: CPU seconds per 100,000 rows, cores busy on average over the run's "
          f"{wall:.1f} s (a single-threaded stage near 1.00 is the bottleneck), peak RSS "
          f"(target <= {TARGET_RSS_MB} MB per service)")
    for name in measured:
        service = name in pids
        mark = f"  {_mark(meter.rss[name] <= TARGET_RSS_MB)}" if service else ""
        print(f"    {name:<18} {meter.cpu[name] / rows * 100_000:6.2f} s   {meter.cpu[name] / wall:5.2f} cores"
              f"   {meter.rss[name]:6.0f} MB{mark}")
    print(f"    {'all':<18} {sum(meter.cpu.values()) / rows * 100_000:6.2f} s   {sum(meter.cpu.values()) / wall:5.2f} cores"
          f" (of {os.cpu_count()})")
    if args.profile:
        for name in pids:
            path = Path(args.profile) / f"{name}.txt"
            if path.exists():
                print(f"  profile of {name} (self time, idle waits left out; {path}):\n{profile_summary(path)}")


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


@contextlib.contextmanager
def database(kind: str, workdir: Path):
    """(url, pid of the server or None): SQLite in the work folder, or a throwaway PostgreSQL cluster."""
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'pipeline.db'}", None
        return
    from tests.postgres import LocalPostgres

    cluster = LocalPostgres()
    try:
        url = cluster.start()
        yield url, cluster.process.pid
    finally:
        cluster.stop()


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--in-process", action="store_true", help="all four services in this process, as `run` does")
    cli.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite")
    cli.add_argument("--writers", type=int, default=1, help="writer processes (default 1)")
    cli.add_argument("--profile", metavar="DIR", help="py-spy each service during the back-to-back run")
    cli.add_argument("--direct", action="store_true", help="also run the stages on the in-memory runner")
    cli.add_argument("--ceiling", action="store_true",
                     help="the writer answers without its database: what the rest of the pipeline carries (a diagnostic)")
    args = cli.parse_args()
    if args.ceiling and args.in_process:
        cli.error("--ceiling replaces the writer's process: it needs one process per service (leave out --in-process)")
    with tempfile.TemporaryDirectory(prefix="clients-import-bench-") as tmp, database(args.database, Path(tmp)) as db:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            asyncio.run(main(os.environ["KAFKA_BOOTSTRAP_SERVERS"], None, Path(tmp), args, db))
        else:
            with LocalKafka() as kafka:
                asyncio.run(main(kafka.bootstrap, kafka.process.pid, Path(tmp), args, db))
