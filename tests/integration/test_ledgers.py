"""The writer's upsert and ledger, and the notifier's ledger, on each real database backend."""

import uuid
from datetime import UTC, datetime

from sqlalchemy import select

from services.notifier import ledger
from services.writer.plan import PendingRow
from services.writer.upsert import apply_rows
from shared.events import (
    AcceptedRow,
    ClientValues,
    ImportOptions,
    Issue,
    JobAccepted,
    JobStatus,
    Mode,
    Outcome,
    RejectedRow,
    RowResult,
    RowsRejected,
    RowsWritten,
    Source,
)
from shared.tables import clients, row_outcomes


def rows(job: str, *values: dict, options: ImportOptions = ImportOptions()) -> list[PendingRow]:
    return [
        PendingRow(job, options, AcceptedRow(row=i, line=i + 1, values=ClientValues(**v), original={"email": v["email"]}))
        for i, v in enumerate(values, start=1)
    ]


async def stored(db, domain: str) -> dict[str, dict]:
    async with db.connect() as conn:
        found = (await conn.execute(select(clients).where(clients.c.email.like(f"%@{domain}")))).mappings()
        return {r["email"]: dict(r) for r in found}


def domain() -> str:
    return f"d{uuid.uuid4().hex[:8]}.example.com"


async def test_a_redelivered_batch_gets_its_recorded_results_and_changes_nothing(db):
    d, job = domain(), str(uuid.uuid4())
    batch = rows(job, {"email": f"ann@{d}", "first_name": "Ann"}, {"email": f"bob@{d}", "first_name": "Bob"})
    first = await apply_rows(db, batch)
    before = await stored(db, d)

    again = await apply_rows(db, batch)

    assert [r.outcome for _, r in first] == [Outcome.CREATED, Outcome.CREATED]
    assert again == first
    assert await stored(db, d) == before


async def test_one_email_twice_in_a_batch_is_applied_in_order(db):
    d = domain()
    batch = [*rows(str(uuid.uuid4()), {"email": f"cy@{d}", "first_name": "Cy", "desk": "north"}),
             *rows(str(uuid.uuid4()), {"email": f"cy@{d}", "first_name": "Cyrus"})]
    results = await apply_rows(db, batch)
    assert [r.outcome for _, r in results] == [Outcome.CREATED, Outcome.UPDATED]
    client = (await stored(db, d))[f"cy@{d}"]
    assert (client["first_name"], client["desk"], client["project"]) == ("Cyrus", "north", "default")


async def test_generated_usernames_take_the_smallest_free_suffix_across_batches(db):
    d = domain()
    base = f"u{uuid.uuid4().hex[:6]}"
    await apply_rows(db, rows(str(uuid.uuid4()), {"email": f"{base}@{d}", "first_name": "A"}))
    await apply_rows(db, rows(str(uuid.uuid4()), {"email": f"{base}@other-{d}", "first_name": "B"},
                              {"email": f"{base}@third-{d}", "first_name": "C"}))
    async with db.connect() as conn:
        names = sorted((await conn.execute(select(clients.c.username).where(clients.c.username.like(f"{base}%")))).scalars())
    assert names == [base, f"{base}1", f"{base}2"]


async def test_a_username_handed_over_within_a_batch_is_written(db):
    d = domain()
    name = f"n{uuid.uuid4().hex[:6]}"
    await apply_rows(db, rows(str(uuid.uuid4()), {"email": f"old@{d}", "first_name": "Old", "username": name}))
    results = await apply_rows(db, rows(str(uuid.uuid4()),
                                        {"email": f"old@{d}", "first_name": "Old", "username": f"{name}x"},
                                        {"email": f"new@{d}", "first_name": "New", "username": name}))
    assert [r.outcome for _, r in results] == [Outcome.UPDATED, Outcome.CREATED]
    assert {e: c["username"] for e, c in (await stored(db, d)).items()} == {f"old@{d}": f"{name}x", f"new@{d}": name}


async def test_modes_and_taken_usernames_are_refused_and_recorded(db):
    d = domain()
    await apply_rows(db, rows(str(uuid.uuid4()), {"email": f"a@{d}", "first_name": "A", "username": f"a-{d[:9]}"}))
    job = str(uuid.uuid4())
    results = await apply_rows(db, [
        *rows(job, {"email": f"a@{d}", "first_name": "A"}, options=ImportOptions(mode=Mode.CREATE_ONLY)),
        *[PendingRow(job, ImportOptions(), r.row.model_copy(update={"row": 2}))
          for r in rows(job, {"email": f"b@{d}", "first_name": "B", "username": f"a-{d[:9]}"})],
    ])
    assert [(r.outcome, r.errors[0].code) for _, r in results] == [
        (Outcome.REJECTED, "already_exists"), (Outcome.REJECTED, "username_taken")]
    async with db.connect() as conn:
        recorded = (await conn.execute(select(row_outcomes.c.outcome).where(row_outcomes.c.job_id == job))).scalars().all()
    assert recorded == ["rejected", "rejected"]


async def test_the_notifier_counts_each_record_once_and_completes_the_job(db):
    job = str(uuid.uuid4())
    accepted = JobAccepted(job_id=job, file_name="f.csv", source=Source.API, requested_by="t", options=ImportOptions(),
                           total=3, chunks=1)
    written = RowsWritten(job_id=job, results=(
        RowResult(row=1, line=2, outcome=Outcome.CREATED, email="a@x.com", client_id="1"),
        RowResult(row=3, line=4, outcome=Outcome.UNCHANGED, email="c@x.com", client_id="3"),
    ))
    rejected = RowsRejected(job_id=job, chunk=0, rows=(
        RejectedRow(row=2, line=3, errors=(Issue(code="missing_email", message="m", field="email"),), original={}),))
    now = datetime.now(UTC)

    async with db.begin() as conn:
        await ledger.record_jobs(conn, [accepted])
        await ledger.record_rows(conn, [written, written])  # the same record twice in one batch
        half = await ledger.settle(conn, [job], now)
    async with db.begin() as conn:
        await ledger.record_rows(conn, [rejected, written])  # and once more later
        done = await ledger.settle(conn, [job], now)
        note = await ledger.notification_for(conn, done[0], 20)

    assert (half[0].status, half[0].counts.processed) == (JobStatus.PROCESSING, 2)
    assert (done[0].status, done[0].notify) == (JobStatus.COMPLETED_WITH_ERRORS, True)
    assert (note.total, note.created, note.unchanged, note.rejected) == (3, 1, 1, 1)
    assert [(e.row, e.code) for e in note.errors] == [(2, "missing_email")]
