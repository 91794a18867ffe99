"""What each written row changed, recorded in the same transaction as the write, so an import can be undone.

Kept apart from the upsert (upsert.py calls `record_changes` once per transaction): the rows' results
already say what happened; this replays them over the clients as they were read, to know, row by
row, the values each row found and the values it left. One multi-row INSERT per batch.
"""

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import execute_many
from shared.events import Outcome, RowResult
from shared.fields import FIELDS
from shared.tables import client_changes

from .plan import Client, PendingRow, merge, new_client

__all__ = ["CHANGED_FIELDS", "changes_of", "record_changes"]

# What an import may change (the email is the client's key, never changed).
CHANGED_FIELDS = tuple(["username", *(f.key for f in FIELDS if f.key not in ("email", "username"))])


def changes_of(
    fresh: Sequence[PendingRow], results: Sequence[tuple[str, RowResult]], existing: dict[str, Client]
) -> list[dict]:
    """One record per created or updated row: a created client's values (`before` None), an updated one's
    changed fields before and after. `results` are the plan's, in the order of `fresh`; rows are replayed
    in that order, so two rows of one email in a batch (two jobs) each record what they found."""
    state = dict(existing)
    records = []
    for pending, (job_id, result) in zip(fresh, results, strict=True):
        if pending.options.dry_run or result.outcome not in (Outcome.CREATED, Outcome.UPDATED):
            continue
        email = result.email
        if result.outcome is Outcome.CREATED:
            after = new_client(result.client_id, pending.row.values, result.username)
            before_values, after_values = None, _values(after, CHANGED_FIELDS)
        else:
            before = state[email]
            after = merge(before, pending.row.values)
            changed = [name for name in CHANGED_FIELDS if getattr(before, name) != getattr(after, name)]
            before_values, after_values = _values(before, changed), _values(after, changed)
        state[email] = after
        records.append(dict(job_id=job_id, row=result.row, line=result.line, email=email, client_id=after.id,
                            outcome=result.outcome.value, before=before_values, after=after_values))
    return records


def _values(client: Client, names: Sequence[str]) -> dict[str, str | None]:
    return {name: getattr(client, name) for name in names}


async def record_changes(
    conn: AsyncConnection, fresh: Sequence[PendingRow], results: Sequence[tuple[str, RowResult]],
    existing: dict[str, Client], now: datetime,
) -> None:
    records = changes_of(fresh, results, existing)
    await execute_many(conn, client_changes.insert(), [{**r, "recorded_at": now} for r in records])
