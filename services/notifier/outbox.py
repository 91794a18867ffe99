"""The webhook outbox: each job's callback delivery as a row of `webhook_deliveries`, written when the
job's notification is published and kept until the delivery is done, so a notifier that stops in the
middle of the retries leaves it to the next one, with its attempts counted.

A delivery is *due* while it is not done and its `next_attempt_at` has come. A notifier *claims* a
bounded batch of due deliveries in one transaction: it counts the attempt before making it (so no
restart can make more than the allowed attempts) and moves `next_attempt_at` past the longest an
attempt may take (the lease), so no other notifier takes the delivery meanwhile. On SQLite the
transaction holds the write lock; on PostgreSQL the rows are read `FOR UPDATE SKIP LOCKED`; on both,
the claim and the record of the attempt's result are compare-and-sets on the attempts read, so a
notifier whose lease ran out (and whose delivery another took over) changes nothing.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from shared.db import as_utc, insert_for
from shared.tables import webhook_deliveries as deliveries

from . import ledger, webhook

__all__ = ["BATCH", "Delivery", "enqueue", "claim", "record", "release", "next_due"]

BATCH = 20  # deliveries claimed, and attempted side by side, per pass
LEASE_MARGIN_S = 5.0  # beyond the attempt's own time-out, before another notifier may take it over
INTERRUPTED = "no answer recorded: the notifier stopped during the attempt"

Result = Literal["delivered", "retried", "failed"]


@dataclass(frozen=True)
class Delivery:
    job_id: str
    url: str
    body: str
    attempt: int  # this attempt's number, counted when it was claimed
    delivery_id: str  # the same on every attempt of this delivery, new for the next one


async def enqueue(conn: AsyncConnection, job_id: str, url: str, body: str, now: datetime) -> None:
    """The job's delivery, due now. While one is pending this changes nothing (a `then` run again after
    a failure does not double it); once it is done, the job's next notification (a repeated request)
    replaces it with a fresh delivery of the new body, attempts from zero, under a new delivery id."""
    fresh = dict(url=url, body=body, attempts=0, next_attempt_at=now, outcome=None, done_at=None,
                 delivery_id=str(uuid.uuid4()))
    insert = insert_for(conn.dialect.name, deliveries)
    await conn.execute(insert.values(job_id=job_id, **fresh).on_conflict_do_update(
        index_elements=[deliveries.c.job_id], set_=fresh, where=deliveries.c.done_at.is_not(None),
    ))


async def next_due(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery is due (maybe already), or None when none is pending."""
    query = select(func.min(deliveries.c.next_attempt_at)).where(deliveries.c.done_at.is_(None))
    return as_utc(await conn.scalar(query))


async def claim(
    conn: AsyncConnection, now: datetime, limit: int, lease_s: float, max_attempts: int
) -> tuple[list[Delivery], list[tuple[str, str]]]:
    """Take up to `limit` due deliveries: each one's attempt is counted and its lease starts. A due
    delivery that has had all its attempts (the last one cut short by a stop) is closed as failed
    instead. The claimed deliveries, and the (job, outcome) of those closed."""
    query = (
        select(deliveries.c.job_id, deliveries.c.url, deliveries.c.body, deliveries.c.attempts, deliveries.c.delivery_id)
        .where(deliveries.c.done_at.is_(None), deliveries.c.next_attempt_at <= now)
        .order_by(deliveries.c.next_attempt_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed: list[Delivery] = []
    closed: list[tuple[str, str]] = []
    for row in (await conn.execute(query)).all():
        if row.attempts >= max_attempts:
            outcome = webhook.failed(row.attempts, INTERRUPTED)
            if await _settle(conn, row.job_id, row.attempts, outcome=outcome, done_at=now, next_attempt_at=now):
                await ledger.record_callback(conn, row.job_id, outcome)
                closed.append((row.job_id, outcome))
            continue
        taken = await _settle(conn, row.job_id, row.attempts, attempts=row.attempts + 1,
                              next_attempt_at=now + timedelta(seconds=lease_s))
        if taken:
            claimed.append(Delivery(row.job_id, row.url, row.body, row.attempts + 1, row.delivery_id or row.job_id))
    return claimed, closed


async def record(
    conn: AsyncConnection, delivery: Delivery, answer: webhook.Answer, now: datetime,
    max_attempts: int, first_backoff_s: float,
) -> tuple[Result, str] | None:
    """The attempt's result: delivered, or failed with another attempt after the back-off, or failed for
    good (all attempts made, or the URL refused). A final outcome goes on the job too, in the answer's
    words (its class, never what the receiver said). None when the delivery is no longer this claim's."""
    if answer.taken:
        result: Result = "delivered"
        outcome = webhook.delivered(delivery.attempt)
    elif answer.final:
        result, outcome = "failed", webhook.not_sent(answer.outcome)
    elif delivery.attempt >= max_attempts:
        result, outcome = "failed", webhook.failed(delivery.attempt, answer.outcome)
    else:
        result, outcome = "retried", f"attempt {delivery.attempt} failed ({answer.outcome}); retrying"
    if result == "retried":
        wait = timedelta(seconds=webhook.backoff(delivery.attempt, first_backoff_s))
        values = dict(outcome=outcome, next_attempt_at=now + wait)
    else:
        values = dict(outcome=outcome, next_attempt_at=now, done_at=now)
    if not await _settle(conn, delivery.job_id, delivery.attempt, **values):
        return None
    if result != "retried":
        await ledger.record_callback(conn, delivery.job_id, outcome)
    return result, outcome


async def release(conn: AsyncConnection, claimed: list[Delivery], now: datetime) -> None:
    """Hand back deliveries whose attempt was cut short: due now for whichever notifier runs next (the
    attempt stays counted: it may have reached the receiver)."""
    for delivery in claimed:
        await _settle(conn, delivery.job_id, delivery.attempt, next_attempt_at=now)


async def _settle(conn: AsyncConnection, job_id: str, read_attempts: int, /, **values) -> bool:
    """Change a pending delivery if it still has the attempts this notifier read or claimed."""
    if "outcome" in values:
        values["outcome"] = values["outcome"][:500]
    changed = await conn.execute(
        update(deliveries)
        .where(deliveries.c.job_id == job_id, deliveries.c.attempts == read_attempts, deliveries.c.done_at.is_(None))
        .values(**values)
    )
    return changed.rowcount == 1
