"""Applying a batch of accepted rows to the database: a handful of set-based statements per batch.

One transaction holds the read of what exists, the upsert of the clients and the ledger of row
results, so a redelivered row finds its recorded result and is never applied or counted twice: the
`clients_import_rows{stage="writer"}` counter, too, counts a row when its result is committed, once.
"""

import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import TypeVar

from sqlalchemy import and_, bindparam, or_, select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import search
from shared.db import BoundRows, bind_many, commit_beside, execute_bound, execute_many, insert_for
from shared.events import Issue, Outcome, RowResult
from shared.fields import FIELDS
from shared.metrics import ROWS, TRANSACTION_SECONDS
from shared.tables import clients, row_outcomes

from .changes import bound_changes
from .plan import Client, PendingRow, Plan, plan_writes, username_base, username_range

log = logging.getLogger("clients_import.writer")
_SLICE = 500  # keys per IN (...) list: well under every database's bound-parameter limit
_RETRIES = 3
T = TypeVar("T")


Results = list[tuple[str, RowResult]]


async def apply_rows(engine: AsyncEngine, pending: Sequence[PendingRow]) -> Results:
    """Each pending row's result, in order. Rows already applied get their recorded result back."""
    return await apply_rows_and_build(engine, pending, list)


async def apply_rows_and_build(engine: AsyncEngine, pending: Sequence[PendingRow], build: Callable[[Results], T]) -> T:
    """`build` of each pending row's result (as `apply_rows` gives them), made while the transaction
    commits (`shared.db.commit_beside`) and handed back once it has."""
    pending = _first_of_each(pending)
    for attempt in range(1, _RETRIES + 1):
        try:
            with _TRANSACTION.time():
                async with engine.connect() as conn:  # rolled back on leaving, unless committed
                    await conn.begin()
                    results, applied = await _apply(conn, pending)
                    built, failed = await commit_beside(conn, lambda: _attempted(build, results))  # noqa: B023 (called at once)
        except IntegrityError:
            # Another writer took a generated username between our read and our write: read again.
            if attempt == _RETRIES:
                raise
            log.warning("username race, retrying batch", extra={"step": "write.retry", "attempt": attempt})
            continue
        _count(applied)  # committed, even when building the answers failed
        if failed is not None:
            raise failed
        return built
    raise AssertionError("unreachable")


def _attempted(build: Callable[[Results], T], results: Results) -> tuple[T | None, Exception | None]:
    try:
        return build(results), None
    except Exception as error:
        return None, error


_TRANSACTION = TRANSACTION_SECONDS.labels("writer")


def _count(applied: list[tuple[str, RowResult]]) -> None:
    """The outcomes this transaction committed (a row already recorded is not counted again)."""
    for outcome, n in Counter(result.outcome for _, result in applied).items():
        ROWS.labels("writer", outcome.value).inc(n)


async def _apply(
    conn: AsyncConnection, pending: list[PendingRow]
) -> tuple[list[tuple[str, RowResult]], list[tuple[str, RowResult]]]:
    """Every pending row's result, and the results this call newly recorded."""
    recorded = await _recorded(conn, [(p.job_id, p.row.row) for p in pending])
    fresh = [p for p in pending if (p.job_id, p.row.row) not in recorded]
    plan = Plan()
    if fresh:
        existing = await _clients_by_email(conn, {p.row.values.email for p in fresh})
        usernames = await _username_owners(conn, fresh, existing)
        plan = plan_writes(fresh, existing, usernames, new_ids(len(fresh)).__next__)
        now = datetime.now(UTC)
        async with search.reindexed(conn, _renamed(existing, plan)):  # in bulk: found once committed
            await _upsert(conn, plan.upserts, now)
        # The ledger's and the change log's (for undo) parameters are built while the new clients are indexed.
        ledger, changes = await search.catch_up_beside(
            conn, lambda: (_bound_ledger(conn.dialect, plan.results), bound_changes(conn.dialect, plan.changes, now)))
        await execute_bound(conn, ledger)
        await execute_bound(conn, changes)
    new = {(job_id, result.row): result for job_id, result in plan.results}
    return [(p.job_id, recorded.get((p.job_id, p.row.row)) or new[(p.job_id, p.row.row)]) for p in pending], plan.results


def _renamed(existing: dict[str, Client], plan: Plan) -> list[str]:
    """The emails of the clients whose searched columns the plan changes."""
    return [email for email, client in plan.updated.items()
            if (before := existing.get(email)) is None or any(getattr(client, c) != getattr(before, c) for c in search.SEARCHED)]


def new_ids(n: int) -> Iterator[str]:
    """n time-ordered (version 7, RFC 9562) UUIDs in their usual text form: the current Unix time in
    milliseconds, then 74 random bits, from one read of the system's randomness.

    Time-ordered so that new clients land at the end of the id index instead of at random pages all over
    it: the clients upsert cost SQLite about a sixth less at 100,000 clients and two fifths less near a million
    (README, Performance). Built as text from the bytes: a `uuid.UUID` per id cost more than planning the
    row it names."""
    pool = bytearray(os.urandom(16 * n))
    stamp = (time.time_ns() // 1_000_000).to_bytes(6, "big")
    for at, byte in enumerate(stamp):
        pool[at::16] = bytes((byte,)) * n
    pool[6::16] = bytes(b & 0x0F | 0x70 for b in pool[6::16])  # the version: 7
    pool[8::16] = bytes(b & 0x3F | 0x80 for b in pool[8::16])  # the variant: RFC 9562's
    text = pool.hex()
    for at in range(0, 32 * n, 32):
        yield f"{text[at:at + 8]}-{text[at + 8:at + 12]}-{text[at + 12:at + 16]}-{text[at + 16:at + 20]}-{text[at + 20:at + 32]}"


def _first_of_each(pending: Iterable[PendingRow]) -> list[PendingRow]:
    seen: dict[tuple[str, int], PendingRow] = {}
    for p in pending:
        seen.setdefault((p.job_id, p.row.row), p)
    return list(seen.values())


def _slices(items: Sequence) -> Iterable[Sequence]:
    for start in range(0, len(items), _SLICE):
        yield items[start : start + _SLICE]


async def _recorded(conn: AsyncConnection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], RowResult]:
    """Results already recorded for these (job, row) keys: one range query per job, not one per row."""
    spans: dict[str, tuple[int, int]] = {}
    for job_id, row in keys:
        low, high = spans.get(job_id, (row, row))
        spans[job_id] = (min(low, row), max(high, row))
    wanted = set(keys)
    found: dict[tuple[str, int], RowResult] = {}
    for job_id, (low, high) in spans.items():
        query = select(row_outcomes).where(
            row_outcomes.c.job_id == job_id, row_outcomes.c.row >= low, row_outcomes.c.row <= high
        )
        for r in (await conn.execute(query)).mappings():
            if (job_id, r["row"]) in wanted:
                found[(job_id, r["row"])] = RowResult(
                    row=r["row"],
                    line=r["line"],
                    outcome=Outcome(r["outcome"]),
                    email=r["email"],
                    client_id=r["client_id"],
                    username=r["username"],
                    errors=tuple(Issue(**e) for e in r["errors"] or ()),
                    original=r["original"] or {},
                )
    return found


async def _clients_by_email(conn: AsyncConnection, emails: set[str]) -> dict[str, Client]:
    found: dict[str, Client] = {}
    columns = [clients.c[name] for name in Client.__dataclass_fields__]
    for part in _slices(sorted(emails)):
        for r in (await conn.execute(select(*columns).where(clients.c.email.in_(part)))).mappings():
            found[r["email"]] = Client(**r)
    return found


async def _username_owners(conn: AsyncConnection, fresh: list[PendingRow], existing: dict[str, Client]) -> dict[str, str]:
    """Owners of every username the batch names, and of every name a new client's username could be made from."""
    explicit = sorted({p.row.values.username for p in fresh if p.row.values.username})
    bases = sorted(
        {
            username_base(p.row.values)
            for p in fresh
            if not p.row.values.username and p.row.values.email not in existing
        }
    )
    owners: dict[str, str] = {}
    exact = select(clients.c.username, clients.c.email).where(clients.c.username.in_(bindparam("names", expanding=True)))
    for part in _slices(sorted({*explicit, *bases})):
        owners.update({r.username: r.email for r in await conn.execute(exact, {"names": list(part)})})
    # Only a base that is itself taken needs its suffixed names (ann1, ann2, ...) looked up.
    for part in _slices([base for base in bases if base in owners]):
        ranges = [and_(clients.c.username >= low, clients.c.username < high) for low, high in map(username_range, part)]
        query = select(clients.c.username, clients.c.email).where(or_(*ranges))
        owners.update({r.username: r.email for r in await conn.execute(query)})
    return owners


async def _upsert(conn: AsyncConnection, upserts: list[Client], now: datetime) -> None:
    if not upserts:
        return
    insert = insert_for(conn.dialect.name, clients)
    changing = (*(f.key for f in FIELDS if f.key != "email"), "updated_at")  # the email is the key
    statement = insert.on_conflict_do_update(
        index_elements=[clients.c.email], set_={name: insert.excluded[name] for name in changing}
    )
    await execute_many(conn, statement, [c.__dict__ for c in upserts], same={"created_at": now, "updated_at": now})


def _bound_ledger(dialect: Dialect, results: list[tuple[str, RowResult]]) -> BoundRows | None:
    rows = [
        {
            "job_id": job_id,
            "row": r.row,
            "line": r.line,
            "email": r.email,
            "outcome": r.outcome.value,
            "client_id": r.client_id,
            "username": r.username,
            "errors": [e.model_dump() for e in r.errors] or None,
            "original": r.original or None,
        }
        for job_id, r in results
    ]
    return bind_many(dialect, row_outcomes.insert(), rows)
