"""The crash test: the stages as separate `clients-import serve` processes (two writers) on a broker of
their own, each killed with SIGKILL in the middle of the imports and started again, the broker killed
and started again on its log directory, a writer stopped with SIGTERM. Then every job has exactly one
notification with the right counts, the database holds exactly the expected clients, and every row
has exactly one recorded outcome.

Every wait is bounded, and every process the test starts is killed in `finally`. The recovery times it
sees are printed (`pytest -s`).
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from sqlalchemy import select

from clients_import.client import ImportClient
from clients_import.local_kafka import LocalKafka
from shared import topics
from shared.db import create_engine, create_tables
from shared.events import ImportNotification, ImportRequest, JobStatus
from shared.kafka import ensure_topics
from shared.settings import Settings
from shared.tables import clients, job_rows, row_outcomes

from .conftest import Partner
from .kafka_tools import read_topic, wait_until_drained

FILES = 8  # files of new clients; each is followed by a file updating them: 16 jobs
ROWS = 1000  # rows per file of new clients
TEST_BUDGET_S = 170.0  # the whole scenario, broker start included: fail rather than hang
RECOVERY_LIMIT_S = 5.0  # a static member killed and started again resumes within this, process start included
SERVICES = (("uploader", "uploader"), ("validator", "validator"), ("writer-a", "writer"), ("writer-b", "writer"),
            ("notifier", "notifier"))
# Env a `serve` process may inherit; every setting it reads is given explicitly.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "CLIENTS_IMPORT_CACHE")


class Service:
    """One `clients-import serve STAGE` process, started again under the same INSTANCE_NAME."""

    def __init__(self, name: str, stage: str, env: dict[str, str], folder: Path) -> None:
        self.name, self.stage = name, stage
        self.instance = f"crash-{name}"
        self.env = {**env, "INSTANCE_NAME": self.instance}
        self.log = folder / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def member_prefix(self) -> str:
        # The broker names a static member `<group.instance.id>-<uuid>`; ours is `<INSTANCE_NAME>.<stage>`.
        return f"{self.instance}.{self.stage}-"

    def start(self) -> float:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clients_import.cli", "serve", self.stage], env=self.env,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.log.parent,
            )
        return time.monotonic()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)

    def terminate(self, timeout: float = 25.0) -> float:
        """SIGTERM; the seconds it took to exit (the batch in hand, the commit, leaving the group)."""
        began = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        assert code == 0, f"{self.name} exited with {code} on SIGTERM:\n{self.tail()}"
        return time.monotonic() - began

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


class Groups:
    """The stages' consumer groups as the broker describes them: member id -> the partitions assigned to it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.admin: AIOKafkaAdminClient | None = None
        self.consumer: AIOKafkaConsumer | None = None

    async def members(self, stage: str) -> dict[str, set[TopicPartition]] | None:
        """None while the broker does not answer."""
        try:
            admin = await self._admin()
            group = self.settings.group(stage)
            responses = await asyncio.wait_for(admin.describe_consumer_groups([group]), 5)
        except Exception:  # the broker is away, or the coordinator is being elected: ask again later
            await self.close()
            return None
        found = {}
        for response in responses:
            for described in response.to_object()["groups"]:
                if described["group"] == group:
                    for member in described["members"]:
                        found[member["member_id"]] = _partitions(member["member_assignment"])
        return found

    async def _admin(self) -> AIOKafkaAdminClient:
        if self.admin is None:
            self.admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap_servers, request_timeout_ms=3000)
            await asyncio.wait_for(self.admin.start(), 5)
        return self.admin

    async def uncommitted(self, stage: str, partitions: set[TopicPartition]) -> int | None:
        """Records on these partitions the stage's group has not committed yet: what a kill now leaves in hand."""
        try:
            if self.consumer is None:
                self.consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap_servers)
                await asyncio.wait_for(self.consumer.start(), 5)
            ends = await asyncio.wait_for(self.consumer.end_offsets(list(partitions)), 5)
            committed = await asyncio.wait_for((await self._admin()).list_consumer_group_offsets(self.settings.group(stage)), 5)
        except Exception:
            return None
        return sum(end - max(0, committed[tp].offset if tp in committed else 0) for tp, end in ends.items())

    async def close(self) -> None:
        if self.consumer is not None:
            consumer, self.consumer = self.consumer, None
            try:
                await asyncio.wait_for(consumer.stop(), 5)
            except Exception:
                pass
        if self.admin is not None:
            admin, self.admin = self.admin, None
            try:
                await asyncio.wait_for(admin.close(), 5)
            except Exception:
                pass


def _partitions(assignment: bytes) -> set[TopicPartition]:
    try:
        return set(ConsumerProtocolMemberAssignment.decode(assignment).partitions())
    except Exception:  # not assigned yet
        return set()


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str, every: float = 0.05) -> float:
    """Seconds until `check` holds; fails loudly after `timeout`."""
    began = time.monotonic()
    while not await check():
        if time.monotonic() - began > timeout:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        await asyncio.sleep(every)
    return time.monotonic() - began


# The files, and what each row must come to.

def create_file(i: int, run: str) -> tuple[str, dict[int, str]]:
    """New clients, two rows in twenty rejected. Local parts repeat in every file: the usernames collide."""
    lines, outcomes = ["firstName,lastName,email,project"], {}
    for j in range(ROWS):
        email = f"user{j}@f{i}.{run}.example.com"
        if j % 20 == 7:
            lines.append(f"F{i}_{j},L{j},user{j}@,p1")  # invalid_email
        elif j % 20 == 13:
            lines.append(f",L{j},{email},p1")  # missing_first_name
        else:
            lines.append(f"F{i}_{j},L{j},{email},p1")
        outcomes[len(lines) - 1] = "rejected" if j % 20 in (7, 13) else "created"
    return "\n".join(lines) + "\n", outcomes


def update_file(i: int, run: str) -> tuple[str, dict[int, str]]:
    """The same clients again: unchanged, updated (an empty project keeps theirs), rejected; new ones too."""
    lines, outcomes = ["firstName,lastName,email,project,type"], {}
    for j in range(ROWS):
        email = f"user{j}@f{i}.{run}.example.com"
        if j % 20 == 13:
            continue
        if j % 20 == 7:  # the address the first file got wrong, now right: a new client
            lines.append(f"G{i}_{j},N{j},{email},p2,")
            outcome = "created"
        elif j % 5 == 0:
            lines.append(f"F{i}_{j},L{j},{email},p1,")
            outcome = "unchanged"
        elif j % 20 == 3:
            lines.append(f"F{i}_{j},M{j},{email},p2,vip")  # invalid_type: the client keeps what it had
            outcome = "rejected"
        else:
            lines.append(f"F{i}_{j},M{j},{email},,")
            outcome = "updated"
        outcomes[len(lines) - 1] = outcome
    return "\n".join(lines) + "\n", outcomes


def expected_clients(run: str) -> dict[str, tuple[str, str, str]]:
    """email -> (first name, last name, project) once both files of every pair are imported."""
    expected = {}
    for i in range(FILES):
        for j in range(ROWS):
            email = f"user{j}@f{i}.{run}.example.com"
            if j % 20 == 13:
                continue
            if j % 20 == 7:
                expected[email] = (f"G{i}_{j}", f"N{j}", "p2")
            elif j % 5 == 0 or j % 20 == 3:
                expected[email] = (f"F{i}_{j}", f"L{j}", "p1")
            else:
                expected[email] = (f"F{i}_{j}", f"M{j}", "p1")
    return expected



async def test_services_killed_and_a_broker_restarted_mid_import_lose_nothing_and_repeat_nothing(tmp_path):
    began = time.monotonic()
    run = uuid.uuid4().hex[:8]
    secret = f"crash-{uuid.uuid4().hex}"
    settings = Settings(
        kafka_bootstrap_servers="pending", database_url=f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}",
        group_prefix=f"crash-{run}", job_signing_secret=secret, _env_file=None,
    )
    kafka = LocalKafka(max_message_bytes=settings.request_max_bytes, data_dir=tmp_path / "kafka")
    services: list[Service] = []
    groups: Groups | None = None
    engine = create_engine(settings.database_url)
    report = Report()
    try:
        await asyncio.to_thread(kafka.start)
        settings = settings.model_copy(update={"kafka_bootstrap_servers": kafka.bootstrap})
        await create_tables(engine)
        await ensure_topics(settings)
        env = {k: os.environ[k] for k in INHERITED if k in os.environ} | {
            "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "DATABASE_URL": settings.database_url,
            "GROUP_PREFIX": settings.group_prefix, "JOB_SIGNING_SECRET": secret, "LOG_LEVEL": "WARNING",
        }
        services = [Service(name, stage, env, tmp_path) for name, stage in SERVICES]
        groups = Groups(settings)
        async with asyncio.timeout(TEST_BUDGET_S - (time.monotonic() - began)):
            await _scenario(settings, kafka, services, groups, run, secret, report)
            await _check(settings, engine, run, report)
        report.print(time.monotonic() - began)
    except BaseException:
        report.print(time.monotonic() - began)
        for service in services:
            print(f"\n--- {service.name} (exit {service.process and service.process.poll()}) ---\n{service.tail()}")
        if kafka.log_path is not None and kafka.log_path.exists():
            print(f"\n--- broker ---\n{kafka.log_path.read_text(errors='replace')[-3000:]}")
        raise
    finally:
        for service in services:
            service.kill()
        if groups is not None:
            await groups.close()
        await engine.dispose()
        await asyncio.to_thread(kafka.stop)
    assert time.monotonic() - began < 180, "the crash test must stay under three minutes"


class Report:
    def __init__(self) -> None:
        self.jobs: dict[str, tuple[str, dict[int, str]]] = {}  # job id -> (kind, row -> outcome)
        self.notified: dict[str, float] = {}  # job id -> when its notification came
        self.events: list[str] = []
        self.recoveries: list[tuple[str, float, float | None]] = []  # (what, to member back, to the next notification)
        self.pending: list[tuple[str, float, float]] = []  # (what, restarted at, member back after)

    def settle(self) -> None:
        for what, at, back in self.pending:
            later = [t - at for t in self.notified.values() if t >= at]
            self.recoveries.append((what, back, min(later) if later else None))

    def print(self, duration: float) -> None:
        rows = sum(len(outcomes) for _, outcomes in self.jobs.values())
        print(f"\ncrash test: {len(self.jobs)} jobs, {rows} rows, in {duration:.1f} s")
        for event in self.events:
            print(f"  {event}")
        print("  recovery, from the start of the new process (or broker):")
        for what, back, progress in self.recoveries:
            following = "-" if progress is None else f"{progress:5.2f} s"
            print(f"    {what:<40} member back with partitions {back:5.2f} s · next notification {following}")


async def _scenario(settings: Settings, kafka: LocalKafka, services: list[Service], groups: Groups, run: str,
                    secret: str, report: Report) -> None:
    for service in services:
        service.start()
    for service in services:
        await until(lambda s=service: _has_member(groups, s), 60, f"{service.name} joined its group")
    await until(lambda: _writers_share(groups), 30, "the two writers share the partitions")

    async with ImportClient(settings) as client:
        partner = Partner(client, secret)
        creates, updates = [], {}
        for i in range(FILES):
            text, outcomes = create_file(i, run)
            request = partner.request(text, f"new-{i}.csv")
            creates.append(request)
            report.jobs[request.job_id] = ("create", outcomes)
            text, outcomes = update_file(i, run)
            update = partner.request(text, f"update-{i}.csv")
            updates[request.job_id] = update
            report.jobs[update.job_id] = ("update", outcomes)
        follower = asyncio.create_task(_follow(client, updates, report))
        try:
            await _chaos(kafka, services, groups, client, iter(creates), follower, report)
        finally:
            follower.cancel()
    report.settle()

    await wait_until_drained(settings, timeout=60)
    # Stopped with SIGTERM, every service leaves its group: none is left holding partitions.
    stops = {s.name: s.terminate() for s in services}
    report.events.append("SIGTERM every service at the end: " + ", ".join(f"{n} {t:.2f} s" for n, t in stops.items()))
    for stage in {s.stage for s in services}:
        await until(lambda st=stage: _empty(groups, st), 3, f"the {stage} group empty once its services stopped")


async def _chaos(kafka: LocalKafka, services: list[Service], groups: Groups, client: ImportClient, to_submit,
                 follower: asyncio.Task, report: Report) -> None:
    """Each service killed and started again while a file is in, the broker too, a writer stopped and started."""
    by_name = {s.name: s for s in services}

    async def submit_next() -> None:
        request = next(to_submit, None)
        if request is not None:
            await client.submit(request)

    async def kill_and_restart(name: str, delay: float) -> None:
        """A file goes in; once records of the service's partitions wait uncommitted (and `delay` more), it is
        killed, and started again at once under the same name."""
        service = by_name[name]
        members = await groups.members(service.stage) or {}
        mine = set().union(*(parts for m, parts in members.items() if m.startswith(service.member_prefix)))
        submitted = time.monotonic()
        await submit_next()
        in_hand = None
        while not in_hand and time.monotonic() - submitted < 3:  # kill it while records of its partitions are in hand
            in_hand = await groups.uncommitted(service.stage, mine)
        await asyncio.sleep(delay)
        service.kill()
        killed = time.monotonic() - submitted
        restarted = service.start()
        back = await until(lambda: _has_member(groups, service, set(members)), 30, f"{name} back in its group")
        report.events.append(f"SIGKILL {name} {killed:.2f} s after a file went in, {in_hand} records of its partitions "
                             "not committed; started again")
        report.pending.append((f"{name} killed, started again", restarted, back))
        assert back < RECOVERY_LIMIT_S, f"{name} took {back:.1f} s to get its partitions back"
        await asyncio.sleep(0.5)

    await groups.uncommitted("uploader", set())  # its clients started, so that it answers at once when it counts
    for name, delay in (("uploader", 0.0), ("validator", 0.01), ("writer-a", 0.02), ("notifier", 0.0), ("writer-b", 0.03)):
        await kill_and_restart(name, delay)

    # The broker, killed and started again on its log directory: same port, same topics, same groups.
    await submit_next()
    await asyncio.sleep(0.2)
    down = time.monotonic()
    # In the loop's executor, whose threads live as long as the loop (the JVM dies with the thread that started it).
    await asyncio.to_thread(kafka.restart, 90, True)
    up = time.monotonic()
    back = await until(lambda: _all_members(groups, services), 60, "every service back in its group after the broker restart")
    report.events.append(f"SIGKILL the broker 0.20 s after a file went in; up again on {kafka.bootstrap} after {up - down:.1f} s")
    report.pending.append(("broker killed, started again", up, back))

    # A writer stopped with SIGTERM finishes its batch, commits and leaves: the other one takes over at once.
    await submit_next()
    await asyncio.sleep(0.2)
    took = by_name["writer-a"].terminate()
    handed = await until(lambda: _writers_share(groups, alone="writer-b"), 10, "writer-b took writer-a's partitions")
    report.events.append(f"SIGTERM writer-a: exited in {took:.2f} s; writer-b had every partition {handed:.2f} s later")
    assert handed < 3.0, "a writer stopped with SIGTERM did not leave its group at once"
    restarted = by_name["writer-a"].start()
    back = await until(lambda: _writers_share(groups), 30, "writer-a back beside writer-b")
    report.pending.append(("writer-a (after SIGTERM) started again", restarted, back))

    await kill_and_restart("validator", 0.1)  # a second time, after the broker restart
    while (request := next(to_submit, None)) is not None:
        await client.submit(request)
    try:
        await asyncio.wait_for(asyncio.shield(follower), 90)
    except TimeoutError:
        missing = [f"{report.jobs[j][0]} {j}" for j in report.jobs if j not in report.notified]
        raise AssertionError(f"no notification within 90 s for {missing}") from None


async def _follow(client: ImportClient, updates: dict[str, ImportRequest], report: Report) -> None:
    """Notes each notification's arrival; a file of new clients done, its update goes in."""
    while len(report.notified) < len(report.jobs):
        try:
            await client.wait([], timeout=1.0, any_new=True)
        except TimeoutError:
            continue
        for job_id in client.notifications.keys() - report.notified.keys():
            report.notified[job_id] = time.monotonic()
            if job_id in updates:
                await client.submit(updates[job_id])


async def _has_member(groups: Groups, service: Service, before: set[str] = frozenset()) -> bool:
    members = await groups.members(service.stage) or {}
    return any(m.startswith(service.member_prefix) and m not in before and parts for m, parts in members.items())


async def _all_members(groups: Groups, services: list[Service]) -> bool:
    for service in services:
        if not await _has_member(groups, service):
            return False
    return True


async def _writers_share(groups: Groups, alone: str | None = None) -> bool:
    """Both writers hold partitions of rows.accepted, all of them between them (or `alone` holds them all)."""
    members = await groups.members("writer") or {}
    holders = {m.split(".writer-")[0].removeprefix("crash-"): len(parts) for m, parts in members.items() if parts}
    every = groups.settings.topic_partitions
    if alone:
        return set(holders) == {alone} and holders[alone] == every
    return set(holders) == {"writer-a", "writer-b"} and sum(holders.values()) == every


async def _empty(groups: Groups, stage: str) -> bool:
    return await groups.members(stage) == {}


async def _check(settings: Settings, engine, run: str, report: Report) -> None:
    # Every job: exactly one notification on the topic, with the counts its rows must give.
    notes: dict[str, list[str]] = {}
    found: dict[str, ImportNotification] = {}
    for record in await read_topic(settings, topics.NOTIFICATIONS, timeout=10):
        note = ImportNotification.model_validate_json(record.value)
        notes.setdefault(note.job_id, []).append(f"{record.partition}:{record.offset} at {record.timestamp}")
        found[note.job_id] = note
    assert set(found) == set(report.jobs), "a notification for a job nobody asked for, or one missing"
    repeated = {job: where for job, where in notes.items() if len(where) != 1}
    assert not repeated, f"jobs notified more than once: {repeated}"
    for job_id, (kind, outcomes) in report.jobs.items():
        tally = Counter(outcomes.values())
        note = found[job_id]
        assert (note.status, note.total, note.created, note.updated, note.unchanged, note.rejected) == (
            JobStatus.COMPLETED_WITH_ERRORS, len(outcomes), tally["created"], tally["updated"], tally["unchanged"],
            tally["rejected"]), f"{kind} job {job_id}: {note}"
    dead = await read_topic(settings, topics.DLQ, timeout=5)
    assert not dead, f"{len(dead)} dead letters: {[dict(r.headers) for r in dead[:5]]}"

    # The database: exactly the expected clients, with the expected values, and distinct usernames.
    async with engine.connect() as conn:
        stored = (await conn.execute(select(clients))).mappings().all()
        written = (await conn.execute(select(row_outcomes.c.job_id, row_outcomes.c.row, row_outcomes.c.outcome))).all()
        rejected = (await conn.execute(select(job_rows.c.job_id, job_rows.c.row, job_rows.c.outcome))).all()
    expected = expected_clients(run)
    assert {c["email"]: (c["first_name"], c["last_name"], c["project"]) for c in stored} == expected
    usernames = [c["username"] for c in stored]
    assert len(set(usernames)) == len(usernames) == len(expected)

    # Every row: one recorded outcome, the one it must have (written rows in row_outcomes, rejected ones in job_rows).
    recorded: dict[tuple[str, int], list[str]] = {}
    for job_id, row, outcome in [*written, *rejected]:
        recorded.setdefault((job_id, row), []).append(outcome)
    wanted = {(job_id, row): [outcome] for job_id, (_, outcomes) in report.jobs.items() for row, outcome in outcomes.items()}
    assert recorded == wanted
