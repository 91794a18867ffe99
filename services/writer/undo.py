"""Undoing an import, one partition's share at a time: a handful of set-based statements per share.

An undo job reaches the writers as one record per partition of clients.import.rows.accepted (the
uploader sends them): each takes back the rows of the undone import whose email goes to that
partition, so it is applied in order with every other row of those emails. One transaction reads
the recorded changes and the clients as they are now, applies the plan (undo_plan.py), and records
each row's result in the writer's ledger (`row_outcomes`, under the undo's job id) with its
conflicts: a redelivered share finds its rows recorded and changes nothing more.
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import search, topics
from shared.db import execute_many, insert_for
from shared.events import Issue, Outcome, RowResult, RowsAccepted, RowsWritten
from shared.kafka import Publication
from shared.metrics import ROWS
from shared.tables import client_changes, clients, row_outcomes, undo_conflicts

from .changes import CHANGED_FIELDS
from .plan import Client
from .undo_plan import Change, UndoPlan, plan_undo

__all__ = ["undo_share", "undone_events", "purge_changes", "RESULTS_PER_RECORD"]

log = logging.getLogger("clients_import.writer")
RESULTS_PER_RECORD = 500  # an undo's results travel in records of at most this many rows (well under 1 MiB)
_SLICE = 500


async def undo_share(engine: AsyncEngine, share: RowsAccepted) -> list[RowResult]:
    """Every result of this share, in row order: those recorded before and those made now."""
    async with engine.begin() as conn:
        mine = [c for c in await _changes(conn, share.undo_of)
                if topics.partition_for(c.email, share.partitions) == share.partition]
        recorded = await _recorded(conn, share.job_id, [c.row for c in mine])
        todo = [c for c in mine if c.row not in recorded]
        plan = UndoPlan()
        if todo:
            current = await _clients(conn, {c.client_id for c in todo})
            owners = await _owners(conn, {c.before["username"] for c in todo if c.before and "username" in c.before})
            plan = plan_undo(todo, current, owners)
            await _apply(conn, share.job_id, plan, datetime.now(UTC))
    _count(plan.results)
    log.info("undo share applied", extra={"step": "undo.applied", "job_id": share.job_id, "undo_of": share.undo_of,
                                          "partition": share.partition, "rows": len(plan.results)})
    return sorted([*recorded.values(), *plan.results], key=lambda r: r.row)


def undone_events(share: RowsAccepted, results: Sequence[RowResult]) -> list[Publication]:
    """The results in records of at most RESULTS_PER_RECORD rows, cut the same way every time, so a
    redelivered share gets the same records (the notifier knows a record by its first row)."""
    return [
        Publication(topics.ROWS_WRITTEN, RowsWritten(job_id=share.job_id, results=tuple(results[i:i + RESULTS_PER_RECORD])),
                    key=share.job_id)
        for i in range(0, len(results), RESULTS_PER_RECORD)
    ]


async def purge_changes(engine: AsyncEngine, retention_days: float, now: datetime) -> int:
    """Forget the values recorded for undo a day after UNDO_RETENTION_DAYS (the day: an undo accepted just
    within the retention still finds them)."""
    cutoff = now - timedelta(days=retention_days + 1)
    async with engine.begin() as conn:
        result = await conn.execute(delete(client_changes).where(client_changes.c.recorded_at < cutoff))
    return result.rowcount or 0


async def _changes(conn: AsyncConnection, job_id: str) -> list[Change]:
    query = select(client_changes).where(client_changes.c.job_id == job_id).order_by(client_changes.c.row)
    return [Change(row=r["row"], line=r["line"], email=r["email"], client_id=r["client_id"], before=r["before"],
                   after=r["after"]) for r in (await conn.execute(query)).mappings()]


async def _recorded(conn: AsyncConnection, job_id: str, rows: list[int]) -> dict[int, RowResult]:
    if not rows:
        return {}
    wanted = set(rows)
    query = select(row_outcomes).where(row_outcomes.c.job_id == job_id, row_outcomes.c.row >= min(rows),
                                       row_outcomes.c.row <= max(rows))
    return {
        r["row"]: RowResult(row=r["row"], line=r["line"], outcome=Outcome(r["outcome"]), email=r["email"],
                            client_id=r["client_id"], username=r["username"],
                            errors=tuple(Issue(**e) for e in r["errors"] or ()))
        for r in (await conn.execute(query)).mappings() if r["row"] in wanted
    }


async def _clients(conn: AsyncConnection, ids: set[str]) -> dict[str, Client]:
    columns = [clients.c[name] for name in Client.__dataclass_fields__]
    found: dict[str, Client] = {}
    ordered = sorted(ids)
    for start in range(0, len(ordered), _SLICE):
        query = select(*columns).where(clients.c.id.in_(ordered[start:start + _SLICE]))
        found.update((r["id"], Client(**r)) for r in (await conn.execute(query)).mappings())
    return found


async def _owners(conn: AsyncConnection, usernames: set[str]) -> dict[str, str]:
    ordered = sorted(u for u in usernames if u)
    owners: dict[str, str] = {}
    for start in range(0, len(ordered), _SLICE):
        query = select(clients.c.username, clients.c.id).where(clients.c.username.in_(ordered[start:start + _SLICE]))
        owners.update((r.username, r.id) for r in await conn.execute(query))
    return owners


async def _apply(conn: AsyncConnection, job_id: str, plan: UndoPlan, now: datetime) -> None:
    for start in range(0, len(plan.deletes), _SLICE):
        await conn.execute(delete(clients).where(clients.c.id.in_(plan.deletes[start:start + _SLICE])))
    if plan.restores:
        statement = update(clients).where(clients.c.id == bindparam("b_id")).values(
            {name: bindparam(f"b_{name}") for name in (*CHANGED_FIELDS, "updated_at")})
        # A restored name or username is searched for by its earlier value again (shared/search.py).
        async with search.reindexed(conn, [c.email for c in plan.restores.values()]):
            await conn.execute(statement, [
                {"b_id": c.id, "b_updated_at": now, **{f"b_{name}": getattr(c, name) for name in CHANGED_FIELDS}}
                for c in plan.restores.values()
            ])
    await search.catch_up(conn)  # clients added by anything but the writer, as after any writer batch
    await execute_many(conn, row_outcomes.insert(), [
        dict(job_id=job_id, row=r.row, line=r.line, email=r.email, outcome=r.outcome.value, client_id=r.client_id,
             username=r.username, errors=[e.model_dump() for e in r.errors] or None, original=None)
        for r in plan.results
    ])
    await execute_many(conn, insert_for(conn.dialect.name, undo_conflicts).on_conflict_do_nothing(), [
        dict(job_id=job_id, row=c.row, field=c.field, email=c.email, client_id=c.client_id, now=c.now,
             undo_value=c.undo_value, would_delete=c.would_delete, code=c.code)
        for c in plan.conflicts
    ])


def _count(results: Sequence[RowResult]) -> None:
    for outcome in {r.outcome for r in results}:
        ROWS.labels("writer", outcome.value).inc(sum(1 for r in results if r.outcome is outcome))
