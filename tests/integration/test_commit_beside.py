"""The writer's work beside its database: answers built while the transaction commits, on each backend."""

import uuid

import pytest
from sqlalchemy import select

from services.writer.app import WriterPorts, upsert_rows
from services.writer.plan import PendingRow
from services.writer.upsert import apply_rows, apply_rows_and_build
from shared.db import commit_beside
from shared.events import AcceptedRow, ClientValues, ImportOptions, RowsAccepted, RowsWritten
from shared.metrics import ROWS
from shared.tables import clients

from .overlap import works_beside


def batch(job_id: str, domain: str, n: int = 3) -> RowsAccepted:
    return RowsAccepted(job_id=job_id, chunk=0, options=ImportOptions(), rows=tuple(
        AcceptedRow(row=i, line=i + 1, values=ClientValues(email=f"p{i}@{domain}", first_name=f"P{i}"), original={})
        for i in range(1, n + 1)))


async def emails(db, domain: str) -> set[str]:
    async with db.connect() as conn:
        return set((await conn.scalars(select(clients.c.email).where(clients.c.email.like(f"%@{domain}")))).all())


async def test_the_answer_is_handed_back_once_the_transaction_is_committed(db):
    domain = f"d{uuid.uuid4().hex[:8]}.example.com"
    async with db.connect() as conn:
        await conn.begin()
        await conn.execute(clients.insert(), [_client("ann", domain)])
        answer = await commit_beside(conn, lambda: "the results, encoded")
    assert answer == "the results, encoded"
    assert await emails(db, domain) == {f"ann@{domain}"}  # seen by another connection: committed


async def test_work_that_fails_beside_the_commit_leaves_the_batch_committed_and_fails_the_caller(db):
    """As a crash after the commit: the batch tried again finds its rows recorded (the writer's ledger)."""
    domain = f"d{uuid.uuid4().hex[:8]}.example.com"

    def failing() -> None:
        raise ValueError("a bug in the answers")

    with pytest.raises(ValueError, match="a bug"):
        async with db.connect() as conn:
            await conn.begin()
            await conn.execute(clients.insert(), [_client("bob", domain)])
            await commit_beside(conn, failing)
    assert await emails(db, domain) == {f"bob@{domain}"}


async def test_on_sqlite_the_work_runs_while_the_commit_does(db):
    if db.dialect.name != "sqlite":
        pytest.skip("PostgreSQL commits in its server: nothing here to watch")
    domain = f"d{uuid.uuid4().hex[:8]}.example.com"
    async with db.connect() as conn:
        await conn.begin()
        await conn.execute(clients.insert(), [_client(f"c{i}", domain) for i in range(2000)])
        overlapped = await works_beside(conn, lambda work: commit_beside(conn, work), every=1)
    assert overlapped, "the work ran while SQLite was idle"


async def test_the_writer_s_answers_are_encoded_beside_the_commit_as_a_plain_client_reads_them(db):
    domain, job_id = f"d{uuid.uuid4().hex[:8]}.example.com", str(uuid.uuid4())
    published = await upsert_rows([batch(job_id, domain)], WriterPorts(db))
    (only,) = published
    assert only.payload == only.event.model_dump_json().encode()
    decoded = RowsWritten.model_validate_json(only.payload)
    assert [r.email for r in decoded.results] == [f"p{i}@{domain}" for i in (1, 2, 3)]
    assert await emails(db, domain) == {f"p{i}@{domain}" for i in (1, 2, 3)}


def _client(name: str, domain: str) -> dict:
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    return dict(id=str(uuid.uuid4()), email=f"{name}@{domain}", username=f"{name}-{uuid.uuid4().hex[:8]}",
                first_name=name, middle_name=None, last_name=None, project="p", desk="d", type="personal",
                created_at=now, updated_at=now)


async def test_rows_committed_beside_answers_that_failed_to_build_are_still_counted(db):
    """The batch is committed either way; the writer's rows metric counts what was committed."""
    domain, job_id = f"d{uuid.uuid4().hex[:8]}.example.com", str(uuid.uuid4())
    pending = [PendingRow(job_id, ImportOptions(), row) for row in batch(job_id, domain).rows]
    created = ROWS.labels("writer", "created")
    before = created._value.get()

    def failing(_results) -> None:
        raise RuntimeError("a bug in the answers")

    with pytest.raises(RuntimeError, match="a bug"):
        await apply_rows_and_build(db, pending, failing)
    assert created._value.get() - before == 3
    assert [r.outcome.value for _, r in await apply_rows(db, pending)] == ["created"] * 3  # recorded: not counted again
    assert created._value.get() - before == 3
