"""Dead letters on clients.import.dlq, for operators: list them, show one, send them back where they came from.

A dead letter is named by its own coordinates on the DLQ, `PARTITION:OFFSET` (or
`clients.import.dlq:PARTITION:OFFSET`); `show` also finds one by the coordinates of the record it
holds, `TOPIC:PARTITION:OFFSET` with the original topic (the newest such letter in the scanned window).

Every read is bounded: by default the newest `SCAN_PER_PARTITION` records of each DLQ partition (from
`--since` on, when that is later), every Kafka call within a time-out, values kept only for the records
a command prints or sends.

Redrive publishes the record unchanged (value and key) to `dlq.original.topic`, on its original
partition (the validator chooses partitions by email, not by key), with `redrive.from` (the letter's
DLQ coordinates), `redrive.original` and `redrive.at` headers. Each letter sent is recorded in
`redriven_letters` (by DLQ partition and offset) once the broker has acknowledged it, and is skipped
afterwards unless `--again`: running the command twice sends nothing twice. A crash between the
acknowledgement and the record may send a letter again on the next run: the stages' ledgers make that
harmless (at least once, exactly once in effect). Excerpts (`dlq.excerpt=true`) are never redriven.
"""

import asyncio
import heapq
import json
import re
import time
import unicodedata
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from rich.text import Text
from sqlalchemy import inspect, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.db import as_utc, create_engine, create_tables, insert_for, reading
from shared.kafka import BrokerAccessError, client_options, start_client
from shared.settings import Settings
from shared.tables import redriven_letters

from .topology import STAGES

__all__ = [
    "Letter", "Filters", "DlqReader", "parse_since", "parse_rate", "parse_coordinates", "printable", "plain",
    "list_letters", "find_letter", "redrive",
]

DLQ = topics.DLQ
SCAN_PER_PARTITION = 10_000  # records read at most from each DLQ partition, newest first
CALL_TIMEOUT_S = 10.0  # each Kafka or database call
SCAN_TIMEOUTS = 6  # a scan of the window takes at most this many call time-outs
HEADER_CHARS = 4000  # of one header's value kept (a reason is at most 2000)
# Only the topics the stages consume take redriven records: a header cannot send a record anywhere else.
REDRIVABLE = frozenset(topic for stage in STAGES for topic in stage.consumes)


@dataclass(frozen=True)
class Letter:
    """One dead letter: where it sits on the DLQ, when it came, what it holds, and why it is there."""

    partition: int
    offset: int
    timestamp: datetime
    key: bytes | None
    headers: dict[str, str]
    size: int
    value: bytes | None = field(default=None, repr=False)  # kept only when a command needs it

    @property
    def coordinates(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def original_topic(self) -> str | None:
        return self.headers.get("dlq.original.topic")

    @property
    def original_partition(self) -> int | None:
        return _int(self.headers.get("dlq.original.partition"))

    @property
    def original_offset(self) -> int | None:
        return _int(self.headers.get("dlq.original.offset"))

    @property
    def original(self) -> str:
        return f"{self.original_topic or '?'}:{_or_q(self.original_partition)}:{_or_q(self.original_offset)}"

    @property
    def stage(self) -> str:
        return self.headers.get("dlq.stage", "")

    @property
    def reason(self) -> str:
        return self.headers.get("dlq.reason", "")

    @property
    def excerpt(self) -> bool:
        return self.headers.get("dlq.excerpt") == "true"

    def summary(self) -> dict:
        """What `list` and `status` say about a letter (no value): JSON-ready, stored text as it is."""
        return {
            "dlq": {"topic": DLQ, "partition": self.partition, "offset": self.offset},
            "at": _iso(self.timestamp),
            "stage": self.stage,
            "reason": self.reason,
            "original": {"topic": self.original_topic, "partition": self.original_partition, "offset": self.original_offset},
            "key": None if self.key is None else self.key[:200].decode("utf-8", "replace"),
            "size": self.size,
            "excerpt": self.excerpt,
        }


def letter_of(record: ConsumerRecord, keep_value: bool = False) -> Letter:
    headers: dict[str, str] = {}
    for name, raw in (record.headers or ())[:50]:
        headers.setdefault(str(name)[:200], (raw or b"")[:HEADER_CHARS].decode("utf-8", "replace"))
    value = record.value or b""
    return Letter(record.partition, record.offset, datetime.fromtimestamp(record.timestamp / 1000, UTC), record.key,
                  headers, len(value), value if keep_value else None)


@dataclass(frozen=True)
class Filters:
    """Which letters a command takes: by stage, by a piece of the reason (any case), from a moment on, by key."""

    stage: str | None = None
    reason: str | None = None
    since: datetime | None = None
    key: str | None = None  # the record's key, exactly (a job id, on every topic but requests)

    def match(self, letter: Letter) -> bool:
        if self.stage and letter.stage != self.stage:
            return False
        if self.key is not None and (letter.key is None or letter.key.decode("utf-8", "replace") != self.key):
            return False
        if self.reason and self.reason.casefold() not in letter.reason.casefold():
            return False
        return not (self.since and letter.timestamp < self.since)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])", re.IGNORECASE)
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2h`, `30m`, `1d12h`, `90s` ago; or an ISO date or date-time (UTC unless it names its zone)."""
    spec = text.strip()
    if spec and _DURATION.sub("", spec).strip() == "" and _DURATION.search(spec):
        seconds = sum(float(n) * _UNIT_S[u.lower()] for n, u in _DURATION.findall(spec))
        return (now or datetime.now(UTC)) - timedelta(seconds=seconds)
    try:
        moment = datetime.fromisoformat(spec)
    except ValueError:
        raise ValueError(f"--since {text!r}: give a duration such as 2h, 30m or 1d, or a date-time such as "
                         "2026-11-25T14:00:00Z") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def parse_rate(text: str) -> float:
    """Records per second: `20` or `20/s`."""
    spec = text.strip().lower().removesuffix("/s")
    try:
        rate = float(spec)
    except ValueError:
        rate = 0.0
    if not rate > 0 or rate == float("inf"):
        raise ValueError(f"--rate {text!r}: give records per second, such as 20 or 20/s")
    return rate


def parse_coordinates(text: str) -> tuple[str | None, int, int]:
    """`PARTITION:OFFSET` (on the DLQ) or `TOPIC:PARTITION:OFFSET`: (topic or None, partition, offset)."""
    parts = text.strip().rsplit(":", 2)
    try:
        if len(parts) == 2:
            return None, int(parts[0]), int(parts[1])
        if len(parts) == 3 and parts[0]:
            return parts[0], int(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise ValueError(f"{text!r}: give PARTITION:OFFSET of the dead letter on {DLQ}, or TOPIC:PARTITION:OFFSET")


def plain(text: object, limit: int | None = None, one_line: bool = True) -> Text:
    """Stored or user text as a rich renderable that is never read as markup (`[/bold]` stays `[/bold]`),
    made printable. Every stored value a command prints goes through here (rich parses a plain str)."""
    return Text(printable(str(text), limit, one_line))


def printable(text: str, limit: int | None = None, one_line: bool = True) -> str:
    """Stored text made safe for a terminal: control and format characters shown as escapes, cut to `limit`."""
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    out = []
    for char in text:
        if char == "\n" and not one_line:
            out.append(char)
        elif unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs") or char == "\x7f":
            out.append(char.encode("unicode_escape").decode())  # \x1b, \u202e, \n, \t...
        else:
            out.append(char)
    return "".join(out)


class DlqReader:
    """A group-less consumer of the DLQ: bounds of its partitions, and bounded reads of offset ranges."""

    def __init__(self, settings: Settings, timeout: float = CALL_TIMEOUT_S) -> None:
        self.settings, self.timeout = settings, timeout
        self.consumer = AIOKafkaConsumer(
            **client_options(settings), group_id=None, enable_auto_commit=False,
            request_timeout_ms=int(timeout * 1000) + 1000, fetch_max_wait_ms=100,
            max_partition_fetch_bytes=settings.request_max_bytes, fetch_max_bytes=max(50 * 1024 * 1024, settings.request_max_bytes),
        )
        self.partitions: list[TopicPartition] = []
        self.timed_out = False

    async def __aenter__(self) -> "DlqReader":
        await started(self.consumer, self.timeout, self.settings)
        try:
            self.partitions = [TopicPartition(DLQ, p) for p in sorted(await partitions_of(self.settings, DLQ, self.timeout))]
        except BaseException:
            await self.consumer.stop()
            raise
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def bounds(self) -> dict[TopicPartition, tuple[int, int]]:
        """(first offset, next offset) of each partition."""
        if not self.partitions:
            return {}
        async with asyncio.timeout(self.timeout):
            first = await self.consumer.beginning_offsets(self.partitions)
            end = await self.consumer.end_offsets(self.partitions)
        return {tp: (first[tp], end[tp]) for tp in self.partitions}

    async def window(self, since: datetime | None, scan: int) -> dict[TopicPartition, tuple[int, int, bool]]:
        """Per partition: (start, stop, cut) for the newest `scan` records from `since` on; `cut` when older
        records that could match were left out."""
        bounds = await self.bounds()
        from_time: dict[TopicPartition, int] = {}
        if since is not None and bounds:
            async with asyncio.timeout(self.timeout):
                found = await self.consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in bounds})
            from_time = {tp: (hit.offset if hit is not None else bounds[tp][1]) for tp, hit in found.items()}
        out = {}
        for tp, (first, end) in bounds.items():
            earliest = max(first, from_time.get(tp, first))
            start = max(earliest, end - scan)
            out[tp] = (start, end, start > earliest)
        return out

    async def read(self, ranges: dict[TopicPartition, tuple[int, int]], deadline: float) -> AsyncIterator[ConsumerRecord]:
        """The records of each partition's [start, stop), in offset order per partition, until `deadline`
        (time.monotonic); `timed_out` says whether it came first."""
        todo = {tp: (start, stop) for tp, (start, stop) in ranges.items() if start < stop}
        if not todo:
            return
        self.consumer.assign(list(todo))
        for tp, (start, _) in todo.items():
            self.consumer.seek(tp, start)
        while todo:
            left = deadline - time.monotonic()
            if left <= 0:
                self.timed_out = True
                return
            batches = await self.consumer.getmany(*todo, timeout_ms=int(min(left, 0.5) * 1000))
            for tp, records in batches.items():
                if tp not in todo:
                    continue
                stop = todo[tp][1]
                for record in records:
                    if record.offset >= stop:
                        break
                    yield record
            for tp in list(todo):
                async with asyncio.timeout(self.timeout):
                    if await self.consumer.position(tp) >= todo[tp][1]:
                        del todo[tp]
                        self.consumer.pause(tp)


async def started(client, timeout: float, settings: Settings):
    """A Kafka client (consumer, producer or admin) started within `timeout`, or closed again; a refusal
    (a wrong password, an untrusted certificate) raises shared.kafka.BrokerAccessError, saying which."""
    return await start_client(client, settings, timeout)


async def partitions_of(settings: Settings, topic: str, timeout: float = CALL_TIMEOUT_S) -> set[int]:
    """The partitions of a topic; none when it does not exist (yet)."""
    admin = await started(AIOKafkaAdminClient(**client_options(settings), request_timeout_ms=int(timeout * 1000)),
                          timeout, settings)
    try:
        async with asyncio.timeout(timeout):
            described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    return {p["partition"] for t in described if t["topic"] == topic and not t["error_code"] for p in t["partitions"]}


@dataclass
class Listing:
    letters: list[Letter]  # newest first
    scanned: int = 0
    cut: bool = False  # older letters were not read (the scan bound)
    timed_out: bool = False
    redriven: dict[tuple[int, int], dict] = field(default_factory=dict)  # letters sent back: when, where to
    redrive_of: dict[tuple[int, int], dict] = field(default_factory=dict)  # letters of a redriven copy: which letter
    database_error: str | None = None  # why the redrives are not shown


async def list_letters(settings: Settings, filters: Filters, limit: int, scan: int = SCAN_PER_PARTITION,
                       timeout: float = CALL_TIMEOUT_S, with_redrives: bool = True) -> Listing:
    """The newest `limit` letters that match, newest first, from the newest `scan` of each partition."""
    kept: list[tuple[int, int, int, Letter]] = []  # a heap of the newest `limit`
    listing = Listing([])
    async with DlqReader(settings, timeout) as reader:
        window = await reader.window(filters.since, scan)
        listing.cut = any(cut for _, _, cut in window.values())
        deadline = time.monotonic() + SCAN_TIMEOUTS * timeout
        async for record in reader.read({tp: (s, e) for tp, (s, e, _) in window.items()}, deadline):
            listing.scanned += 1
            letter = letter_of(record)
            if not filters.match(letter):
                continue
            item = (record.timestamp, record.partition, record.offset, letter)
            if len(kept) < limit:
                heapq.heappush(kept, item)
            elif item[:3] > kept[0][:3]:
                heapq.heapreplace(kept, item)
        listing.timed_out = reader.timed_out
    listing.letters = [item[3] for item in sorted(kept, key=lambda i: i[:3], reverse=True)]
    if with_redrives and listing.letters:
        try:
            listing.redriven, listing.redrive_of = await _redriven(settings, listing.letters, timeout)
        except (TimeoutError, SQLAlchemyError, OSError) as error:  # the letters are still worth listing
            listing.database_error = describe_error(error)
    return listing


async def find_letter(settings: Settings, coordinates: tuple[str | None, int, int], scan: int = SCAN_PER_PARTITION,
                      timeout: float = CALL_TIMEOUT_S) -> tuple[Letter, int]:
    """The letter at DLQ coordinates, or the newest letter of an original record (and how many there are)."""
    topic, partition, offset = coordinates
    async with DlqReader(settings, timeout) as reader:
        bounds = await reader.bounds()
        deadline = time.monotonic() + SCAN_TIMEOUTS * timeout
        if topic in (None, DLQ):
            tp = TopicPartition(DLQ, partition)
            if tp not in bounds:
                raise LookupError(f"{DLQ} has no partition {partition} (it has {len(bounds)})")
            first, end = bounds[tp]
            if not first <= offset < end:
                raise LookupError(f"no dead letter at {DLQ}:{partition}:{offset}: partition {partition} holds offsets "
                                  f"{first} to {end - 1}" if end > first else f"no dead letter at {DLQ}:{partition}:{offset}: "
                                  f"partition {partition} is empty")
            async with aclosing(reader.read({tp: (offset, offset + 1)}, deadline)) as records:
                async for record in records:
                    return letter_of(record, keep_value=True), 1
            raise LookupError(f"could not read {DLQ}:{partition}:{offset} within {SCAN_TIMEOUTS * timeout:.0f} s")
        window = await reader.window(None, scan)
        found: list[ConsumerRecord] = []
        async for record in reader.read({tp: (s, e) for tp, (s, e, _) in window.items()}, deadline):
            letter = letter_of(record)
            if (letter.original_topic, letter.original_partition, letter.original_offset) == (topic, partition, offset):
                found.append(record)
        if not found:
            raise LookupError(f"no dead letter of {topic}:{partition}:{offset} among the newest {scan} records of each "
                              f"partition of {DLQ}")
        newest = max(found, key=lambda r: (r.timestamp, r.partition, r.offset))
        return letter_of(newest, keep_value=True), len(found)


async def _has_table(engine: AsyncEngine, name: str) -> bool:
    async with reading(engine).connect() as conn:
        return await conn.run_sync(lambda sync: inspect(sync).has_table(name))


async def _redriven(settings: Settings, letters: list[Letter], timeout: float) -> tuple[dict, dict]:
    """What the redriven_letters table says of these letters: which were sent back ({(partition, offset): {at, to}}),
    and which hold a redriven copy that failed again ({(partition, offset): the first letter's place})."""
    engine = create_engine(settings.database_url)
    try:
        async with asyncio.timeout(timeout):
            return await _redriven_in(engine, letters)
    finally:
        await engine.dispose()


async def _redriven_in(engine: AsyncEngine, letters: list[Letter]) -> tuple[dict, dict]:
    if not letters or not await _has_table(engine, redriven_letters.name):
        return {}, {}
    by_partition: dict[int, list[int]] = {}
    for letter in letters:
        by_partition.setdefault(letter.partition, []).append(letter.offset)
    t = redriven_letters.c
    out = {}
    async with reading(engine).connect() as conn:
        for partition, offsets in by_partition.items():
            rows = await conn.execute(select(redriven_letters).where(t.dlq_partition == partition, t.dlq_offset.in_(offsets)))
            for row in rows.mappings():
                out[(row["dlq_partition"], row["dlq_offset"])] = {
                    "at": _iso(as_utc(row["redriven_at"])),
                    "to": {"topic": row["to_topic"], "partition": row["to_partition"], "offset": row["to_offset"]},
                }
        copies: dict[tuple[str, int], dict[int, tuple[int, int]]] = {}
        for letter in letters:
            if letter.original_topic and letter.original_partition is not None and letter.original_offset is not None:
                copies.setdefault((letter.original_topic, letter.original_partition), {})[letter.original_offset] = (
                    letter.partition, letter.offset)
        of = {}
        for (topic, partition), offsets in copies.items():
            rows = await conn.execute(select(t.dlq_partition, t.dlq_offset, t.to_offset).where(
                t.to_topic == topic, t.to_partition == partition, t.to_offset.in_(list(offsets))))
            for first_partition, first_offset, to_offset in rows:
                of[offsets[to_offset]] = {"partition": first_partition, "offset": first_offset}
    return out, of


@dataclass(frozen=True)
class Redriven:
    """What `redrive` did with one letter: sent (or would send), or skipped, and why."""

    action: str  # sent, would_send, skipped
    letter: Letter
    why: str = ""
    to: dict | None = None

    def document(self) -> dict:
        return {"action": self.action, **self.letter.summary(), "why": self.why or None, "to": self.to}


@dataclass
class RedriveRun:
    done: list[Redriven] = field(default_factory=list)
    already: int = 0  # letters skipped because they were redriven before
    scanned: int = 0
    cut: bool = False
    timed_out: bool = False


def _skip_reason(letter: Letter) -> str:
    if letter.headers.get("dlq.unreadable") == "true":
        return ("it stands for records the Kafka client could not read and holds nothing of them: read them at "
                "the offsets its reason names with kcat, and send them again")
    if letter.excerpt:
        return (f"an excerpt: only the first {letter.size:,} bytes of a record of {letter.headers.get('dlq.original.size', '?')} "
                "bytes were kept, so it cannot be sent again (send the file again instead)")
    if not letter.original_topic:
        return "no dlq.original.topic header: it does not say where it came from"
    if letter.original_topic not in REDRIVABLE:
        return f"{letter.original_topic} is not a topic the pipeline's stages consume"
    return ""


async def redrive(
    settings: Settings, filters: Filters, limit: int, *, dry_run: bool = False, rate: float | None = None,
    again: bool = False, scan: int = SCAN_PER_PARTITION, timeout: float = CALL_TIMEOUT_S,
    on_each: Callable[[Redriven], None] = lambda _: None,
) -> RedriveRun:
    """Send the oldest `limit` matching letters (not redriven yet, unless `again`) back to their topics, in
    DLQ order: each partition's letters in the order they came, so one key's records keep their order."""
    run = RedriveRun()
    engine = create_engine(settings.database_url)
    producer: AIOKafkaProducer | None = None
    try:
        if not dry_run:
            async with asyncio.timeout(timeout):
                await create_tables(engine)
            producer = await started(AIOKafkaProducer(
                **client_options(settings), max_request_size=settings.request_max_bytes,
                request_timeout_ms=int(timeout * 1000), acks="all", enable_idempotence=True), timeout, settings)
        partition_counts: dict[str, int] = {}
        pause = 1 / rate if rate else 0.0
        sent = 0
        async with DlqReader(settings, timeout) as reader:
            window = await reader.window(filters.since, scan)
            run.cut = any(cut for _, _, cut in window.values())
            done = await _done_in_window(engine, window, timeout)
            deadline = time.monotonic() + SCAN_TIMEOUTS * timeout + limit * (pause + 2 * timeout)
            records = reader.read({tp: (s, e) for tp, (s, e, _) in window.items()}, deadline)
            async for record in records:
                run.scanned += 1
                letter = letter_of(record, keep_value=True)
                if not filters.match(letter):
                    continue
                if (letter.partition, letter.offset) in done and not again:
                    run.already += 1
                    continue
                if why := _skip_reason(letter):
                    outcome = Redriven("skipped", letter, why)
                elif dry_run:
                    outcome = Redriven("would_send", letter, to={"topic": letter.original_topic,
                                                                  "partition": letter.original_partition, "offset": None})
                else:
                    if sent and pause:
                        await asyncio.sleep(pause)
                    outcome = Redriven("sent", letter, to=await _send(producer, engine, letter, partition_counts,
                                                                      settings, timeout))
                run.done.append(outcome)
                on_each(outcome)
                if outcome.action != "skipped":
                    sent += 1
                    if sent >= limit:
                        break
            await records.aclose()
            run.timed_out = reader.timed_out
    finally:
        if producer is not None:
            await producer.stop()
        await engine.dispose()
    return run


async def _done_in_window(engine: AsyncEngine, window: dict, timeout: float) -> set[tuple[int, int]]:
    if not await _has_table(engine, redriven_letters.name):
        return set()
    t = redriven_letters.c
    done = set()
    async with asyncio.timeout(timeout), reading(engine).connect() as conn:
        for tp, (start, stop, _) in window.items():
            if start < stop:
                rows = await conn.execute(select(t.dlq_partition, t.dlq_offset).where(
                    t.dlq_partition == tp.partition, t.dlq_offset >= start, t.dlq_offset < stop))
                done |= {(p, o) for p, o in rows}
    return done


async def _send(producer: AIOKafkaProducer, engine: AsyncEngine, letter: Letter, partition_counts: dict[str, int],
                settings: Settings, timeout: float) -> dict:
    topic = letter.original_topic
    if topic not in partition_counts:
        partition_counts[topic] = len(await partitions_of(settings, topic, timeout))
    partition = letter.original_partition
    if partition is None or not 0 <= partition < partition_counts[topic]:
        partition = None  # the topic has fewer partitions now: the key chooses
    now = datetime.now(UTC)
    headers = [
        ("redrive.from", f"{DLQ}:{letter.coordinates}".encode()),
        ("redrive.original", letter.original.encode()),
        ("redrive.at", _iso(now).encode()),
    ]
    async with asyncio.timeout(timeout):
        meta = await producer.send_and_wait(topic, letter.value, key=letter.key, partition=partition, headers=headers)
    row = {"dlq_partition": letter.partition, "dlq_offset": letter.offset, "redriven_at": now,
           "to_topic": topic, "to_partition": meta.partition, "to_offset": meta.offset}
    statement = insert_for(engine, redriven_letters).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[redriven_letters.c.dlq_partition, redriven_letters.c.dlq_offset],
        set_={k: statement.excluded[k] for k in ("redriven_at", "to_topic", "to_partition", "to_offset")},
    )
    async with asyncio.timeout(timeout), engine.begin() as conn:
        await conn.execute(statement)
    return {"topic": topic, "partition": meta.partition, "offset": meta.offset}


def value_text(value: bytes, limit: int) -> tuple[str, bool]:
    """A value as a person reads it: pretty JSON when it is JSON, else text (bytes that are not UTF-8 as
    escapes), at most `limit` characters; and whether it was cut."""
    head = value[: limit * 4 + 4]
    text = head.decode("utf-8", "backslashreplace")
    if len(value) <= 1024 * 1024:
        try:
            text = json.dumps(json.loads(value), indent=2, ensure_ascii=False)
        except Exception:  # not JSON, or too deep to read: shown as text
            pass
    cut = len(text) > limit or len(head) < len(value)
    return printable(text[:limit], one_line=False), cut


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _or_q(value: int | None) -> str:
    return "?" if value is None else str(value)


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# What the command line prints. Stored text (keys, reasons, values) is made printable and printed as rich Text
# (`plain`), never as markup: a reason holding `[/bold]` is shown, not parsed.

UNREACHABLE = 3  # exit code: the broker or the database did not answer in time (2 is a usage error)
_UNREACHABLE_ERRORS = (TimeoutError, KafkaError, OSError, SQLAlchemyError)


def _unreachable(command: str, settings: Settings, error: BaseException, timeout: float) -> int:
    import sys

    what = describe_error(error)
    if isinstance(error, BrokerAccessError):  # Kafka answered and turned us away: say only why
        print(f"clients-import {command}: {printable(what, 300)}", file=sys.stderr)
        return UNREACHABLE
    print(f"clients-import {command}: no answer within {timeout:.0f} s per call from Kafka at {settings.kafka_bootstrap_servers} "
          f"or the database: {printable(what, 300)}", file=sys.stderr)
    return UNREACHABLE


def describe_error(error: BaseException) -> str:
    text = str(error)
    return text if text.startswith(type(error).__name__) else f"{type(error).__name__}: {text}" if text else type(error).__name__


def _notes(command: str, cut: bool, timed_out: bool, scan: int) -> None:
    import sys

    if cut:
        print(f"clients-import {command}: read only the newest {scan} records of each partition of {DLQ}; "
              "older dead letters were not looked at (--scan N, or --since TIME, to choose)", file=sys.stderr)
    if timed_out:
        print(f"clients-import {command}: the DLQ could not be read to its end in time: the answer is partial", file=sys.stderr)


async def run_list(settings: Settings, filters: Filters, limit: int, scan: int, timeout: float, as_json: bool) -> int:
    try:
        listing = await list_letters(settings, filters, limit, scan, timeout)
    except _UNREACHABLE_ERRORS as error:
        return _unreachable("dlq list", settings, error, timeout)
    if as_json:
        for letter in listing.letters:
            place = (letter.partition, letter.offset)
            print(json.dumps({**letter.summary(), "redriven": listing.redriven.get(place),
                              "redrive_of": listing.redrive_of.get(place)}, ensure_ascii=False))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"Dead letters on {DLQ}: {len(listing.letters)} shown, newest first "
                            f"({listing.scanned} read)", title_justify="left")
        for column in ("dlq", "at (UTC)", "stage", "from", "key", "reason", "redriven"):
            table.add_column(column, overflow="fold")
        for letter in listing.letters:
            redriven = listing.redriven.get((letter.partition, letter.offset))
            to = redriven and redriven["to"]
            again = listing.redrive_of.get((letter.partition, letter.offset))
            key = "" if letter.key is None else letter.key.decode("utf-8", "replace")
            table.add_row(
                plain(letter.coordinates), plain(_iso(letter.timestamp)[:19].replace("T", " ")), plain(letter.stage, 40),
                plain(letter.original, 200), plain(key, 60),
                Text.assemble(plain(letter.reason, 160), (" (excerpt: cannot be redriven)" if letter.excerpt else "", "dim"),
                              (f" (a redriven copy of {again['partition']}:{again['offset']} that failed again)"
                               if again else "", "dim")),
                plain(f"{redriven['at'][:19].replace('T', ' ')} → {to['topic']}:{to['partition']}:{to['offset']}"
                      if redriven else ""),
            )
        Console().print(table)
    _notes("dlq list", listing.cut, listing.timed_out, scan)
    if listing.database_error:
        import sys

        print(f"clients-import dlq list: which letters were redriven is unknown, the database did not answer: "
              f"{printable(listing.database_error, 300)}", file=sys.stderr)
    return 0


async def run_show(settings: Settings, coordinates: tuple[str | None, int, int], max_chars: int, scan: int, timeout: float,
                   as_json: bool) -> int:
    import base64
    import sys

    try:
        letter, count = await find_letter(settings, coordinates, scan, timeout)
    except LookupError as error:
        print(f"clients-import dlq show: {error}", file=sys.stderr)
        return 2
    except _UNREACHABLE_ERRORS as error:
        return _unreachable("dlq show", settings, error, timeout)
    value = letter.value or b""
    if as_json:
        try:
            text, encoding = value[: max_chars * 4].decode("utf-8"), "utf-8"
            text = text[:max_chars]
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(value[:max_chars]).decode(), "base64"
        document = {**letter.summary(), "headers": letter.headers, "value": text, "value_encoding": encoding,
                    "value_cut": len(text.encode() if encoding == "utf-8" else value[:max_chars]) < len(value),
                    "letters_of_this_record": count}
        print(json.dumps(document, ensure_ascii=False))
        return 0
    from rich.console import Console

    console = Console(highlight=False)
    console.print(Text.assemble((f"{DLQ}:{letter.coordinates}", "bold"), f" at {_iso(letter.timestamp)}, {letter.size:,} bytes",
                                Text.assemble(f" (the newest of {count} dead letters of ", plain(letter.original, 200), ")",
                                              style="dim") if count > 1 else ""))
    key = "(none)" if letter.key is None else letter.key[:1024].decode("utf-8", "backslashreplace")
    console.print(Text.assemble(("key", "bold"), " ", plain(key, 300)))
    for name, header in letter.headers.items():
        console.print(Text.assemble((printable(name, 100), "bold"), " ", plain(header, 2000)))
    text, cut = value_text(value, max_chars)
    console.print(Text.assemble(("value", "bold"),
                                (f" (the first {max_chars:,} characters; --max-chars N for more)" if cut else "", "dim")))
    console.print(Text(text), soft_wrap=True)  # value_text has made it printable already
    if letter.excerpt:
        console.print(Text("This letter is an excerpt of a larger record: it cannot be redriven.", style="yellow"))
    return 0


async def run_redrive(settings: Settings, filters: Filters, limit: int, *, dry_run: bool, rate: float, again: bool,
                      scan: int, timeout: float, as_json: bool) -> int:
    from rich.console import Console

    console = Console(highlight=False)

    def say(outcome: Redriven) -> None:
        if as_json:
            print(json.dumps(outcome.document(), ensure_ascii=False), flush=True)
            return
        letter = outcome.letter
        head = Text.assemble(f"{DLQ}:{letter.coordinates} ", plain(letter.stage or "?", 40), ": ", plain(letter.reason, 120))
        if outcome.action == "sent":
            to = outcome.to
            console.print(Text.assemble(("sent", "green"), "       ", head, "\n           → ",
                                        plain(f"{to['topic']}:{to['partition']}:{to['offset']}")))
        elif outcome.action == "would_send":
            console.print(Text.assemble(("would send", "cyan"), " ", head, "\n           → ", plain(letter.original, 200)))
        else:
            console.print(Text.assemble(("skipped", "yellow"), "    ", head, "\n           ", plain(outcome.why, 300)))

    try:
        run = await redrive(settings, filters, limit, dry_run=dry_run, rate=rate, again=again, scan=scan, timeout=timeout,
                            on_each=say)
    except _UNREACHABLE_ERRORS as error:
        return _unreachable("dlq redrive", settings, error, timeout)
    counts = {action: sum(1 for o in run.done if o.action == action) for action in ("sent", "would_send", "skipped")}
    summary = (f"{'would send' if dry_run else 'sent'} {counts['would_send'] if dry_run else counts['sent']}, "
               f"skipped {counts['skipped']} that cannot be redriven, {run.already} already redriven"
               + (" (--again sends those too)" if run.already else "") + f"; {run.scanned} read")
    if as_json:
        import sys

        print(f"clients-import dlq redrive: {summary}", file=sys.stderr)
    else:
        console.print(Text(summary))
    _notes("dlq redrive", run.cut, run.timed_out, scan)
    return 0
