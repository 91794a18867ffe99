"""`clients-import status`: is the pipeline keeping up? Each stage's consumer group (members, lag per
partition), the dead letters (how many, the newest reasons), the oldest unfinished job.

Unhealthy, said in plain words and by the exit code: a group with records waiting and no member to
read them, or a job unfinished past half its deadline. Every Kafka and database call has a time-out;
the DLQ is read from its newest records only.
"""

import asyncio
import time
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.errors import KafkaError
from rich.console import Console
from rich.table import Table
from rich.text import Text
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from shared.db import as_utc, create_engine, has_tables, reading
from shared.events import JobStatus
from shared.kafka import BrokerAccessError, client_options
from shared.settings import Settings
from shared.tables import import_jobs

from .dlq import CALL_TIMEOUT_S, DLQ, SCAN_TIMEOUTS, DlqReader, describe_error, letter_of, plain, printable, started
from .topology import STAGES

__all__ = ["collect_status", "show_status", "HEALTHY", "UNHEALTHY", "UNREACHABLE"]

HEALTHY, UNHEALTHY, UNREACHABLE = 0, 1, 3  # exit codes (2 is a usage error)
NEWEST_LETTERS = 20
UNFINISHED = (JobStatus.RECEIVED, JobStatus.PROCESSING)


async def collect_status(settings: Settings, newest: int = NEWEST_LETTERS, timeout: float = CALL_TIMEOUT_S,
                         now: datetime | None = None) -> dict:
    """The status document (`status --json`)."""
    now = now or datetime.now(UTC)
    groups, (count, letters) = await _groups_and_letters(settings, newest, timeout)
    try:
        jobs = await _jobs(settings, now, timeout)
    except (TimeoutError, SQLAlchemyError, OSError) as error:  # the rest is still worth showing
        jobs = {"unfinished": None, "oldest": None, "error": printable(describe_error(error), 300)}
    document = {
        "checked_at": _iso(now),
        "kafka": settings.kafka_bootstrap_servers,
        "groups": groups,
        "dlq": {"topic": DLQ, "count": count, "newest": letters},
        "jobs": jobs,
    }
    document["problems"] = problems(document, settings.job_deadline_s)
    document["healthy"] = not document["problems"]
    return document


def problems(document: dict, deadline_s: float) -> list[str]:
    """What is wrong, one plain sentence each."""
    found = []
    for group in document["groups"]:
        if group["lag"] > 0 and not group["members"]:
            waiting = ", ".join(f"{n} on {t}" for t, n in sorted(_lag_by_topic(group).items()) if n)
            found.append(f"nothing runs the {group['stage']}: its group {group['group']} has no member, "
                         f"and {group['lag']} record(s) wait ({waiting})")
    if document["jobs"].get("error"):
        found.append(f"the database did not answer, so unfinished jobs are unknown: {document['jobs']['error']}")
    oldest = document["jobs"].get("oldest")
    if oldest and oldest["age_s"] > deadline_s / 2:
        found.append(f"job {oldest['job_id']} ({oldest['file_name']}) is still {oldest['status']} after "
                     f"{_duration(oldest['age_s'])}, past half its deadline of {_duration(deadline_s)}")
    return found


def _lag_by_topic(group: dict) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in group["partitions"]:
        out[p["topic"]] = out.get(p["topic"], 0) + p["lag"]
    return out


async def _groups_and_letters(settings: Settings, newest: int, timeout: float) -> tuple[list[dict], tuple[int, list[dict]]]:
    admin = await started(AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(timeout * 1000)),
                          timeout, settings)
    try:
        consumer = await started(AIOKafkaConsumer(**client_options(settings), group_id=None, enable_auto_commit=False,
                                                  request_timeout_ms=int(timeout * 1000) + 1000), timeout, settings)
        try:
            wanted = sorted({t for stage in STAGES for t in stage.consumes})
            async with asyncio.timeout(timeout):
                described = await admin.describe_topics(wanted)
            partitions = {t["topic"]: sorted(p["partition"] for p in t["partitions"]) for t in described if not t["error_code"]}
            tps = [TopicPartition(t, p) for t in wanted for p in partitions.get(t, ())]
            async with asyncio.timeout(timeout):
                ends = await consumer.end_offsets(tps) if tps else {}
                firsts = await consumer.beginning_offsets(tps) if tps else {}
            groups = [await _group(admin, settings, stage, partitions, ends, firsts, timeout) for stage in STAGES]
        finally:
            await consumer.stop()
    finally:
        await admin.close()
    return groups, await _letters(settings, newest, timeout)


async def _group(admin: AIOKafkaAdminClient, settings: Settings, stage, partitions: dict, ends: dict, firsts: dict,
                 timeout: float) -> dict:
    name = settings.group(stage.name)
    description = await _retrying(lambda: admin.describe_consumer_groups([name]), timeout)
    found = [g for response in description for g in response.to_object()["groups"] if g["group"] == name]
    state = found[0]["state"] if found else "Unknown"
    members = [_member(m) for m in (found[0]["members"] if found else ())]
    committed = await _retrying(lambda: admin.list_consumer_group_offsets(name), timeout)
    rows = []
    for topic in stage.consumes:
        if topic not in partitions:
            continue
        for p in partitions[topic]:
            tp = TopicPartition(topic, p)
            meta = committed.get(tp)
            at = meta.offset if meta is not None and meta.offset >= 0 else None
            # With no committed offset the group starts from the earliest record (auto_offset_reset).
            lag = max(0, ends[tp] - (at if at is not None else firsts[tp]))
            rows.append({"topic": topic, "partition": p, "committed": at, "end": ends[tp], "lag": lag})
    missing = [t for t in stage.consumes if t not in partitions]
    return {"stage": stage.name, "group": name, "state": state, "members": members, "lag": sum(r["lag"] for r in rows),
            "partitions": rows, "missing_topics": missing}


def _member(member: dict) -> dict:
    assigned: list[str] = []
    try:
        assignment = ConsumerProtocolMemberAssignment.decode(member["member_assignment"])
        assigned = [f"{tp.topic}:{tp.partition}" for tp in sorted(assignment.partitions())]
    except Exception:  # a member that has not been given partitions yet (or speaks another protocol)
        pass
    return {"member_id": member["member_id"], "client_id": member["client_id"], "host": member["client_host"],
            "partitions": assigned}


async def _retrying(call, timeout: float):
    """A group call, retried while the coordinator is still being elected (a fresh broker), within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with asyncio.timeout(max(0.1, deadline - time.monotonic())):
                return await call()
        except KafkaError as error:
            if not getattr(error, "retriable", False) or time.monotonic() + 0.2 > deadline:
                raise
            await asyncio.sleep(0.2)


async def _letters(settings: Settings, newest: int, timeout: float) -> tuple[int, list[dict]]:
    """How many records the DLQ holds, and the newest `newest` of them (at most `newest` read per partition)."""
    async with DlqReader(settings, timeout) as reader:
        bounds = await reader.bounds()
        count = sum(end - first for first, end in bounds.values())
        ranges = {tp: (max(first, end - newest), end) for tp, (first, end) in bounds.items()}
        records = [r async for r in reader.read(ranges, time.monotonic() + SCAN_TIMEOUTS * timeout)]
    records.sort(key=lambda r: (r.timestamp, r.partition, r.offset), reverse=True)
    return count, [letter_of(r).summary() for r in records[:newest]]


async def _jobs(settings: Settings, now: datetime, timeout: float) -> dict:
    engine = create_engine(settings.database_url)
    try:
        async with asyncio.timeout(timeout):
            if not await has_tables(engine):
                return {"unfinished": 0, "oldest": None}
            statuses = [s.value for s in UNFINISHED]
            async with reading(engine).connect() as conn:
                unfinished = (await conn.execute(select(func.count()).select_from(import_jobs)
                                                 .where(import_jobs.c.status.in_(statuses)))).scalar_one()
                row = (await conn.execute(select(import_jobs).where(import_jobs.c.status.in_(statuses))
                                          .order_by(import_jobs.c.received_at, import_jobs.c.id).limit(1))).mappings().first()
    finally:
        await engine.dispose()
    oldest = None
    if row is not None:
        received = as_utc(row["received_at"])
        oldest = {"job_id": row["id"], "file_name": row["file_name"], "status": row["status"],
                  "requested_by": row["requested_by"], "received_at": _iso(received),
                  "age_s": round((now - received).total_seconds(), 1)}
    return {"unfinished": unfinished, "oldest": oldest}


async def show_status(settings: Settings, as_json: bool, newest: int = NEWEST_LETTERS, timeout: float = CALL_TIMEOUT_S) -> int:
    """Print the status; the exit code: 0 healthy, 1 unhealthy, 3 the broker or database did not answer in time."""
    import json
    import sys

    try:
        document = await collect_status(settings, newest, timeout)
    except (TimeoutError, KafkaError, OSError) as error:
        what = printable(describe_error(error), 300)
        if isinstance(error, BrokerAccessError):  # Kafka answered and turned us away: say only why
            print(f"clients-import status: {what}", file=sys.stderr)
            return UNREACHABLE
        print(f"clients-import status: could not check the pipeline within {timeout:.0f} s per call "
              f"(Kafka {settings.kafka_bootstrap_servers}, database {_safe_url(settings.database_url)}): {what}",
              file=sys.stderr)
        return UNREACHABLE
    if as_json:
        print(json.dumps(document, ensure_ascii=False))
    else:
        render(document, Console(), settings.job_deadline_s)
    return HEALTHY if document["healthy"] else UNHEALTHY


def render(document: dict, console: Console, deadline_s: float) -> None:
    """The document for a person. Every stored or broker-given value is `plain` text: never read as markup."""
    console.print(Text.assemble(("Consumer groups", "bold"), " on ", plain(document["kafka"] or "")))
    groups = Table()
    for column in ("stage", "group", "state", "members", "lag", "waiting on"):
        groups.add_column(column, overflow="fold", justify="right" if column == "lag" else "left")
    for g in document["groups"]:
        members = Text("\n").join(Text.assemble(plain(m["host"], 60), f" ({len(m['partitions'])} partitions)")
                                  for m in g["members"]) or Text("none", style="red")
        waiting = ", ".join(f"{p['topic'].removeprefix('clients.import.')}:{p['partition']}={p['lag']}"
                            for p in g["partitions"] if p["lag"]) or "—"
        if g["missing_topics"]:
            waiting += f" (missing topics: {', '.join(g['missing_topics'])})"
        lag_style = "red" if g["lag"] and not g["members"] else ("yellow" if g["lag"] else "green")
        groups.add_row(plain(g["stage"]), plain(g["group"]), plain(g["state"]), members,
                       Text(str(g["lag"]), style=lag_style), plain(waiting))
    console.print(groups)

    dlq = document["dlq"]
    console.print(Text.assemble(("Dead letters", "bold"), " on ", plain(dlq["topic"]), f": {dlq['count']}",
                                f"; the newest {len(dlq['newest'])}:" if dlq["newest"] else ""))
    letters = Table()
    for column in ("dlq", "at", "stage", "from", "reason"):
        letters.add_column(column, overflow="fold")
    for letter in dlq["newest"]:
        o = letter["original"]
        letters.add_row(plain(f"{letter['dlq']['partition']}:{letter['dlq']['offset']}"),
                        plain((letter["at"] or "")[:19].replace("T", " ")), plain(letter["stage"], 40),
                        plain(f"{o['topic']}:{o['partition']}:{o['offset']}", 120),
                        Text.assemble(plain(letter["reason"], 160), (" (excerpt)" if letter["excerpt"] else "", "dim")))
    if dlq["newest"]:
        console.print(letters)

    jobs = document["jobs"]
    oldest = jobs["oldest"]
    heading = ("Unfinished jobs", "bold")
    if oldest:
        console.print(Text.assemble(heading, f": {jobs['unfinished']}; the oldest, ", plain(oldest["job_id"]), " (",
                                    plain(oldest["file_name"], 100), "), is ", plain(oldest["status"]), " since ",
                                    plain(oldest["received_at"][:19].replace("T", " ")),
                                    f" UTC: {_duration(oldest['age_s'])} (deadline {_duration(deadline_s)})"))
    elif jobs.get("error"):
        console.print(Text.assemble(heading, ": unknown (the database did not answer)"))
    else:
        console.print(Text.assemble(heading, ": none"))
    if document["problems"]:
        console.print(Text("Unhealthy:", style="bold red"))
        for problem in document["problems"]:
            console.print(Text.assemble("  • ", plain(problem, 1000)))
    else:
        console.print(Text.assemble(("Healthy", "bold green"), ": every group with records waiting has a member, "
                                    "and no job is past half its deadline"))


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "(unreadable DATABASE_URL)"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
