"""`make bench-api`: reads under load, on a real served API in front of the pipeline on the local Kafka.

Each service runs in a process of its own, as `clients-import serve <name>` starts it: the API (and
the page) in one, the four stages in one each, on one SQLite database. The clients table is first
filled with SEED clients, then:

  1. search: each kind of search through the API, one at a time (target: at most 50 ms);
  2. the import alone: UPLOADS files of ROWS rows posted at once to POST /imports, until the last
     one's notification; its rows per second;
  3. the same import with READERS concurrent readers in flight the whole time, each reading in a
     loop (a pause of THINK_MS on average between its requests, as a page polling; `--think-ms 0`
     for none, the worst case) the job list the page loads, a job document, the first page of
     clients and a search (the API shares one answer among those asking the same within 500 ms:
     services/api/readcache.py). Prints the read latency (target: p95 <= 500 ms on SQLite) and the
     import's rate against the import alone (target: within 20 %), and the CPU each process used.

Options change the counts (`--readers`, `--uploads`, `--seed`, `--think-ms` for a pause between a
reader's requests, `--api-nice` to run the API at a lower CPU priority than the pipeline).
"""

import argparse
import asyncio
import importlib.util
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clients_import.client import ImportClient  # noqa: E402
from clients_import.local_kafka import LocalKafka, free_port  # noqa: E402
from clients_import.topology import STAGE_NAMES  # noqa: E402
from services.api.readcache import FRESH_S  # noqa: E402
from shared.settings import Settings  # noqa: E402

_spec = importlib.util.spec_from_file_location("pipeline_bench", Path(__file__).with_name("bench.py"))
pipeline_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline_bench)
csv_file = pipeline_bench.csv_file  # the same 5000-row files `make bench` imports

SEED, UPLOADS, ROWS, READERS = 250_000, 50, 5000, 200
THINK_MS = 500.0  # a reader pauses 0-1 s (500 ms on average) between requests: the page polls its jobs every 500 ms
posted: list[float] = []
TARGET_SEARCH_MS, TARGET_READ_P95_MS, TARGET_RATE_RATIO = 50.0, 500.0, 0.80
TOKEN = f"bench-{uuid.uuid4().hex}"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIRST = ["Ann", "Bob", "Carla", "Dmitri", "Eve", "Fatima", "George", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Mohammed",
         "Nora", "Oscar", "Priya"]
LAST = ["Smith", "Jones", "Garcia", "Nguyen", "Kowalski", "Okafor", "Müller", "Rossi", "Tanaka", "Silva", "Haddad", "Novak"]
READS = ("GET /imports?limit=20", "GET /imports/{id}", "GET /clients?limit=50", "GET /clients?q=...")
READER_SEARCHES = ("smith", "garcia", "nora", "kowalski1", "zzq", "an", "example", "müller")
SEARCHES = {  # kind -> texts; each is asked through the API at 250,000 clients
    "a name (many matches)": ["smith", "garcia", "müller"],
    "an email or username fragment (few)": ["kowalski12345", "nora.silva777", "a1b2"],
    "in every client (capped at 1000)": ["example", "com"],
    "one or two characters (prefix)": ["a", "no"],
    "nothing matches": ["zzqx", "nobody-here"],
}


def seed_clients(db_path: Path, n: int) -> float:
    """n clients, written as the writer would (the search index follows by its triggers). Seconds taken."""
    started = time.perf_counter()
    connection = sqlite3.connect(db_path, timeout=60)
    connection.execute("PRAGMA journal_mode=WAL")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    connection.execute("BEGIN IMMEDIATE")
    for start in range(0, n, 10_000):
        rows = []
        for i in range(start, min(start + 10_000, n)):
            first, last = FIRST[i % len(FIRST)], LAST[(i // len(FIRST)) % len(LAST)]
            moment = (base + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f")
            rows.append((str(uuid.uuid4()), f"{first}.{last}{i}@{uuid.uuid4().hex[:6]}.example.com".lower(),
                         f"{first}{last}{i}".lower(), first, None, last, "seed", "sales", "personal", moment, moment))
        connection.executemany("INSERT INTO clients (id, email, username, first_name, middle_name, last_name, project, desk, "
                               "type, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    connection.execute("COMMIT")
    connection.close()
    return time.perf_counter() - started


class RawHttp:
    """One keep-alive HTTP/1.1 connection, as small as a reader needs: the bench's own CPU stays out of the figures."""

    def __init__(self, port: int) -> None:
        self.port, self.reader, self.writer = port, None, None

    async def get(self, target: str) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.writer.write(f"GET {target} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Readers:
    """READERS loops of reads; latencies are kept while `recording` is set."""

    def __init__(self, port: int, count: int, think_s: float, job_ids: list[str]) -> None:
        self.port, self.count, self.think_s, self.job_ids = port, count, think_s, job_ids
        self.latencies: dict[str, list[float]] = {}
        self.failures: dict[str, int] = {}
        self.timeline: list[tuple[float, float]] = []  # (when a read began, how long it took)
        self.recording = False
        self.tasks: list[asyncio.Task] = []

    def target(self, rng: random.Random) -> tuple[str, str]:
        """What a page reads: the job list it loads, a job it follows, the clients, a search."""
        kind = rng.choice(READS)
        if kind == "GET /imports/{id}":
            return kind, f"/imports/{rng.choice(self.job_ids)}"
        if kind == "GET /clients?q=...":
            return kind, f"/clients?limit=50&q={quote(rng.choice(READER_SEARCHES))}"
        return kind, kind.removeprefix("GET ")

    async def loop(self, seed: int) -> None:
        rng, http = random.Random(seed), RawHttp(self.port)
        while True:
            kind, target = self.target(rng)
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(http.get(target), 60)
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                http.close()
                status = 0
            elapsed = time.perf_counter() - started
            if self.recording:
                if status == 200:
                    self.latencies.setdefault(kind, []).append(elapsed)
                    self.timeline.append((started, elapsed))
                else:
                    failure = f"{kind} -> {status or 'no answer'}"
                    self.failures[failure] = self.failures.get(failure, 0) + 1
            if self.think_s:
                await asyncio.sleep(rng.uniform(0, 2 * self.think_s))

    def start(self) -> None:
        self.tasks = [asyncio.create_task(self.loop(i)) for i in range(self.count)]

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def all(self) -> list[float]:
        return [t for times in self.latencies.values() for t in times]


async def import_files(http: httpx.AsyncClient, client: ImportClient, uploads: int, rows: int) -> tuple[float, list[str]]:
    """`uploads` files posted at once; rows per second from the first post to the last notification.
    `posted` holds when the last upload was answered."""
    files = [csv_file(rows, uuid.uuid4().hex[:8]) for _ in range(uploads)]
    started = time.perf_counter()

    async def post(data: bytes) -> str:
        answer = await http.post("/imports", files={"file": ("bench.csv", data, "text/csv")}, headers=AUTH)
        answer.raise_for_status()
        return answer.json()["job_id"]

    job_ids = await asyncio.gather(*(post(data) for data in files))
    posted.append(time.perf_counter())
    notes = await client.wait(job_ids, timeout=900)
    elapsed = time.perf_counter() - started
    created = sum(n.created for n in notes.values())
    assert created == uploads * rows, f"{created} rows created of {uploads * rows}"
    return created / elapsed, job_ids


async def time_searches(http: httpx.AsyncClient, repeat: int = 7) -> dict[str, tuple[float, float, int, bool]]:
    """Per kind of search: median and worst milliseconds through the API, one request at a time, each
    computed (not a shared answer: see services/api/readcache.py); matches and exactness."""
    figures = {}
    for kind, texts in SEARCHES.items():
        times, total, exact = [], 0, True
        for text in texts:
            for _ in range(repeat):
                await asyncio.sleep(FRESH_S + 0.05)  # the previous answer is no longer shared
                started = time.perf_counter()
                answer = await http.get("/clients", params={"q": text, "limit": 50}, headers=AUTH)
                times.append((time.perf_counter() - started) * 1000)
                answer.raise_for_status()
            total, exact = max(total, answer.json()["total"]), exact and answer.json()["total_exact"]
        figures[kind] = (statistics.median(times), max(times), total, exact)
    return figures


def cpu_seconds(pid: int) -> float:
    """User and system CPU a process has used (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds each process used during a phase: where the time goes."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes, self.start, self.used = processes, {}, {}

    def __enter__(self) -> "CpuMeter":
        self.start = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        self.began = time.perf_counter()
        return self

    def __exit__(self, *_: object) -> None:
        self.used = {name: cpu_seconds(pid) - self.start[name] for name, pid in self.processes.items()}
        self.wall = time.perf_counter() - self.began

    def line(self) -> str:
        return ", ".join(f"{name} {used / self.wall:.2f}" for name, used in self.used.items())


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def start_services(settings: Settings, api_port: int, api_nice: int = 0) -> list[subprocess.Popen]:
    env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers, "DATABASE_URL": settings.database_url,
           "GROUP_PREFIX": settings.group_prefix, "LOG_LEVEL": "WARNING", "JOB_SIGNING_SECRET": settings.signing_key,
           "API_TOKEN": TOKEN, "API_HOST": "127.0.0.1", "API_PORT": str(api_port)}
    def lower_priority() -> None:
        os.nice(api_nice)

    return [subprocess.Popen([sys.executable, "-m", "clients_import.cli", "serve", name], env=env, cwd=ROOT,
                             stdout=subprocess.DEVNULL, preexec_fn=lower_priority if name == "api" and api_nice else None)
            for name in ("api", *STAGE_NAMES)]


async def wait_for_api(http: httpx.AsyncClient, workers: list[subprocess.Popen]) -> None:
    for _ in range(600):
        if any(w.poll() is not None for w in workers):
            raise RuntimeError("a service stopped while starting")
        try:
            if (await http.get("/healthz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise RuntimeError("the API did not answer within 60 s")


async def main(bootstrap: str, workdir: Path, args: argparse.Namespace, broker_pid: int | None) -> None:
    db_path = workdir / "clients.db"
    settings = Settings(kafka_bootstrap_servers=bootstrap, database_url=f"sqlite+aiosqlite:///{db_path}",
                        group_prefix=f"bench-api-{uuid.uuid4().hex[:6]}", job_signing_secret=uuid.uuid4().hex, _env_file=None)
    api_port = free_port()
    workers = start_services(settings, api_port, args.api_nice)
    try:
        limits = httpx.Limits(max_connections=args.uploads + 10)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=300, limits=limits) as http:
            await wait_for_api(http, workers)
            await asyncio.sleep(3)  # the stages join their groups; the warm-up import waits for them anyway
            if args.without_search_index:  # what the index's triggers cost: new clients are still indexed in bulk
                with sqlite3.connect(db_path, timeout=60) as connection:
                    for trigger in ("removed",):
                        connection.execute(f"DROP TRIGGER clients_search_{trigger}")
            seeded_s = seed_clients(db_path, args.seed)
            async with ImportClient(settings) as client:
                await import_files(http, client, 2, ROWS)  # warm: topics, groups, caches
                searches = await time_searches(http)
                names = {"api": workers[0].pid, **{n: w.pid for n, w in zip(STAGE_NAMES, workers[1:], strict=True)},
                         "bench": os.getpid(), **({"kafka": broker_pid} if broker_pid else {})}
                with CpuMeter(names) as cpu_alone:
                    alone, job_ids = await import_files(http, client, args.uploads, ROWS)
                readers = Readers(api_port, args.readers, args.think_ms / 1000, job_ids)
                readers.start()
                await asyncio.sleep(2)  # every reader connected and reading
                readers.recording = True
                with CpuMeter(names) as cpu_loaded:
                    loaded_started = time.perf_counter()
                    loaded, _ = await import_files(http, client, args.uploads, ROWS)
                readers.recording = False
                await readers.stop()
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(timeout=30)
    report(args, seeded_s, searches, alone, loaded, readers)
    print(f"  CPU used (cores) by process, import alone:       {cpu_alone.line()}")
    print(f"  CPU used (cores) by process, import with readers: {cpu_loaded.line()}")
    posting = [ms for began, ms in readers.timeline if began <= posted[-1]]
    after = [ms for began, ms in readers.timeline if began > posted[-1]]
    print(f"  reads while the {args.uploads} uploads were being posted ({posted[-1] - loaded_started:.1f} s): "
          f"{len(posting):,}, p95 {percentile(posting, 95) * 1000:.0f} ms; after: {len(after):,}, "
          f"p95 {percentile(after, 95) * 1000:.0f} ms")


def report(args, seeded_s: float, searches: dict, alone: float, loaded: float, readers: Readers) -> None:
    times = [t * 1000 for t in readers.all()]
    p50, p95, p99 = (percentile(times, p) for p in (50, 95, 99))
    ratio = loaded / alone
    pause = f", {args.think_ms} ms mean pause between a reader's requests" if args.think_ms else ", no pause between requests"
    print(f"\nclients-import bench-api: SQLite, {os.cpu_count()} cores, the API and each stage in a process of its own")
    index = "WITHOUT the search index's triggers" if args.without_search_index else "the search index kept by its triggers"
    print(f"  {args.seed:,} clients seeded in {seeded_s:.1f} s ({index})")
    print(f"  search through the API, one request at a time (target <= {TARGET_SEARCH_MS:.0f} ms):")
    for kind, (median, worst, total, exact) in searches.items():
        found = f"{total:,}{'' if exact else '+'} found"
        print(f"    {kind:40s} median {median:6.1f} ms  worst {worst:6.1f} ms  {found:12s} {_mark(median <= TARGET_SEARCH_MS)}")
    print(f"  import alone: {args.uploads} uploads x {ROWS} rows at once: {alone:,.0f} rows/s")
    print(f"  the same with {args.readers} concurrent readers{pause}:")
    print(f"    {len(times):,} reads, {sum(readers.failures.values())} failed: p50 {p50:.0f} ms, p95 {p95:.0f} ms, p99 {p99:.0f} ms, "
          f"max {max(times, default=float('nan')):.0f} ms   target p95 <= {TARGET_READ_P95_MS:.0f} ms  {_mark(p95 <= TARGET_READ_P95_MS)}")
    for kind, kind_times in sorted(readers.latencies.items()):
        ms = [t * 1000 for t in kind_times]
        print(f"      {kind:24s} {len(ms):7,} reads  p50 {percentile(ms, 50):6.0f} ms  p95 {percentile(ms, 95):6.0f} ms")
    for failure, n in sorted(readers.failures.items()):
        print(f"      failed: {failure} x {n}")
    print(f"    import under load: {loaded:,.0f} rows/s = {ratio:.0%} of the import alone"
          f"   target >= {TARGET_RATE_RATIO:.0%}  {_mark(ratio >= TARGET_RATE_RATIO)}")


def _mark(ok: bool) -> str:
    return "met" if ok else "MISSED"


if __name__ == "__main__":
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("--readers", type=int, default=READERS)
    cli.add_argument("--uploads", type=int, default=UPLOADS)
    cli.add_argument("--seed", type=int, default=SEED, help="clients in the table before the imports")
    cli.add_argument("--think-ms", type=float, default=THINK_MS, help="mean pause between two requests of one reader (0: none)")
    cli.add_argument("--api-nice", type=int, default=0, help="run the API process at this lower CPU priority (nice)")
    cli.add_argument("--without-search-index", action="store_true",
                     help="drop the search index's triggers first (what they cost; the writer still indexes new clients "
                          "in bulk, shared/search.py)")
    arguments = cli.parse_args()
    with tempfile.TemporaryDirectory(prefix="clients-import-bench-api-") as tmp:
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
            asyncio.run(main(os.environ["KAFKA_BOOTSTRAP_SERVERS"], Path(tmp), arguments, None))
        else:
            with LocalKafka(max_message_bytes=Settings(_env_file=None).request_max_bytes) as kafka:
                asyncio.run(main(kafka.bootstrap, Path(tmp), arguments, kafka.process.pid))
