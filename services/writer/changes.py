"""What each written row changed, recorded in the same transaction as the write, so an import can be undone.

Kept apart from the upsert (upsert.py binds `bound_changes` once per transaction, while the search
index catches up): the plan already holds, row by row, the client each row found and the one it left
(`Plan.changes`); this turns them into records. One multi-row INSERT per batch.
"""

from collections.abc import Sequence
from datetime import datetime
from operator import attrgetter

from sqlalchemy.engine import Dialect

from shared.db import BoundRows, bind_many
from shared.fields import FIELDS
from shared.tables import client_changes

from .plan import Change

__all__ = ["CHANGED_FIELDS", "bound_changes", "change_records"]

# What an import may change (the email is the client's key, never changed).
CHANGED_FIELDS = tuple(["username", *(f.key for f in FIELDS if f.key not in ("email", "username"))])
_CHANGED_VALUES = attrgetter(*CHANGED_FIELDS)


def change_records(changes: Sequence[Change]) -> list[dict]:
    """One record per created or updated row: a created client's values (`before` None), an updated one's
    changed fields before and after."""
    records = []
    for job_id, result, before, after in changes:
        after_all = _CHANGED_VALUES(after)
        if before is None:
            before_values, after_values = None, dict(zip(CHANGED_FIELDS, after_all, strict=True))
        else:
            pairs = [(name, old, new) for name, old, new in zip(CHANGED_FIELDS, _CHANGED_VALUES(before), after_all, strict=True)
                     if old != new]
            before_values = {name: old for name, old, _ in pairs}
            after_values = {name: new for name, _, new in pairs}
        records.append(dict(job_id=job_id, row=result.row, line=result.line, email=result.email, client_id=after.id,
                            outcome=result.outcome.value, before=before_values, after=after_values))
    return records


def bound_changes(dialect: Dialect, changes: Sequence[Change], now: datetime) -> BoundRows | None:
    """The change log's INSERT and its parameters, for `shared.db.execute_bound`."""
    return bind_many(dialect, client_changes.insert(), change_records(changes), same={"recorded_at": now})

