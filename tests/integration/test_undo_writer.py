"""The writer's record of what each import changed, and its undo, on each real database backend."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from services.api import readside
from services.writer.undo import purge_changes, undo_share
from services.writer.upsert import apply_rows
from shared import undo
from shared.events import Outcome, RowsAccepted
from shared.tables import client_changes, undo_conflicts

from .test_ledgers import domain, rows, stored


def share(undo_of: str, job: str | None = None) -> RowsAccepted:
    """The whole undo on one partition (one writer), as the uploader sends it with TOPIC_PARTITIONS=1."""
    return RowsAccepted(job_id=job or str(uuid.uuid4()), chunk=0, rows=(), undo_of=undo_of, partition=0, partitions=1)


async def changes(db, job: str) -> list[dict]:
    async with db.connect() as conn:
        query = select(client_changes).where(client_changes.c.job_id == job).order_by(client_changes.c.row)
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def test_the_writer_records_what_each_row_changed_in_the_same_transaction(db):
    d, first, second = domain(), str(uuid.uuid4()), str(uuid.uuid4())
    await apply_rows(db, rows(first, {"email": f"ann@{d}", "first_name": "Ann", "desk": "D1"}))
    await apply_rows(db, rows(second, {"email": f"ann@{d}", "first_name": "Annie"},
                              {"email": f"bob@{d}", "first_name": "Bob"}))

    created, = await changes(db, first)
    updated, made = await changes(db, second)

    assert created["outcome"] == "created" and created["before"] is None
    assert created["after"]["first_name"] == "Ann" and created["after"]["username"].startswith("ann")
    assert (updated["outcome"], updated["before"], updated["after"]) == ("updated", {"first_name": "Ann"},
                                                                         {"first_name": "Annie"})
    assert made["outcome"] == "created"
    await apply_rows(db, rows(second, {"email": f"ann@{d}", "first_name": "Annie"}))  # redelivered: nothing more
    assert len(await changes(db, second)) == 2


async def test_undoing_the_second_import_restores_the_updated_and_deletes_the_created_then_the_first(db):
    d, first, second = domain(), str(uuid.uuid4()), str(uuid.uuid4())
    await apply_rows(db, rows(first, {"email": f"ann@{d}", "first_name": "Ann", "last_name": "Lee"},
                              {"email": f"bob@{d}", "first_name": "Bob"}))
    before_second = await stored(db, d)
    await apply_rows(db, rows(second, {"email": f"ann@{d}", "first_name": "Annie", "last_name": "Lea"},
                              {"email": f"cat@{d}", "first_name": "Cat"}))

    results = await undo_share(db, share(second))

    assert [(r.row, r.outcome) for r in results] == [(1, Outcome.RESTORED), (2, Outcome.DELETED)]
    after_undo = await stored(db, d)
    assert set(after_undo) == {f"ann@{d}", f"bob@{d}"}
    for field in ("first_name", "last_name", "username", "desk"):
        assert after_undo[f"ann@{d}"][field] == before_second[f"ann@{d}"][field]

    results = await undo_share(db, share(first))
    assert [r.outcome for r in results] == [Outcome.DELETED, Outcome.DELETED]
    assert await stored(db, d) == {}


async def test_a_client_changed_since_is_kept_and_its_conflicts_recorded_and_a_redelivery_changes_nothing(db):
    d, first, later, undo_job = domain(), str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    await apply_rows(db, rows(first, {"email": f"ann@{d}", "first_name": "Ann"}, {"email": f"bob@{d}", "first_name": "Bob"}))
    await apply_rows(db, rows(later, {"email": f"bob@{d}", "first_name": "Robert"}))

    results = await undo_share(db, share(first, undo_job))

    assert [r.outcome for r in results] == [Outcome.DELETED, Outcome.CONFLICT]
    assert set(await stored(db, d)) == {f"bob@{d}"}
    async with db.connect() as conn:
        found = (await conn.execute(select(undo_conflicts).where(undo_conflicts.c.job_id == undo_job))).mappings().all()
    assert [(c["row"], c["field"], c["now"], c["would_delete"]) for c in found] == [(2, "first_name", "Robert", True)]

    again = await undo_share(db, share(first, undo_job))  # delivered again: the recorded results, nothing more done
    assert again == results
    assert set(await stored(db, d)) == {f"bob@{d}"}


async def test_who_may_undo_what(db):
    d, job = domain(), str(uuid.uuid4())
    now = datetime.now(UTC)
    async with db.begin() as conn:
        assert undo.refusal(await undo.undo_state(conn, job), None, now, 30).code == "unknown_import"
    await apply_rows(db, rows(job, {"email": f"ann@{d}", "first_name": "Ann"}))
    async with db.begin() as conn:
        from shared.tables import import_jobs

        await conn.execute(import_jobs.insert().values(
            id=job, file_name="a.csv", source="api", requested_by="t", mode="upsert", dry_run=False, status="processing",
            total=1, created=0, updated=0, unchanged=0, rejected=0, warnings=[], received_at=now))
        assert undo.refusal(await undo.undo_state(conn, job), None, now, 30).code == "not_finished"
        await conn.execute(update(import_jobs).where(import_jobs.c.id == job).values(status="completed", created=1,
                                                                                     finished_at=now))
        assert undo.refusal(await undo.undo_state(conn, job), None, now, 30) is None
        assert undo.refusal(await undo.undo_state(conn, job), None, now + timedelta(days=31), 30).code == "too_old"
        assert await undo.claim(conn, job, "undo-1") == "undo-1"
        assert await undo.claim(conn, job, "undo-2") == "undo-1"
        assert undo.refusal(await undo.undo_state(conn, job), "undo-2", now, 30).code == "already_undone"
        assert undo.refusal(await undo.undo_state(conn, job), "undo-1", now, 30) is None  # its own, delivered again


async def test_recorded_values_are_purged_a_day_after_the_retention(db):
    d, job = domain(), str(uuid.uuid4())
    await apply_rows(db, rows(job, {"email": f"ann@{d}", "first_name": "Ann"}))
    now = datetime.now(UTC)

    await purge_changes(db, 30, now + timedelta(days=30, hours=23))
    assert len(await changes(db, job)) == 1
    await purge_changes(db, 30, now + timedelta(days=31, minutes=1))
    assert await changes(db, job) == []


async def test_a_restored_name_is_searched_for_by_its_earlier_value_again(db):
    d, first, second = domain(), str(uuid.uuid4()), str(uuid.uuid4())
    await apply_rows(db, rows(first, {"email": f"ann@{d}", "first_name": f"Zelda{d[:6]}"}))
    await apply_rows(db, rows(second, {"email": f"ann@{d}", "first_name": f"Wilma{d[:6]}"}))

    await undo_share(db, share(second))

    async with db.connect() as conn:
        earlier, _, _ = await readside.search_clients(conn, f"Zelda{d[:6]}", 50, 0)
        overwritten, _, _ = await readside.search_clients(conn, f"Wilma{d[:6]}", 50, 0)
    assert [c["email"] for c in earlier] == [f"ann@{d}"]
    assert overwritten == []


async def test_usernames_given_back_follow_each_other_and_never_twice(db):
    # Finding 3: Ann xname -> yname (import X), Bob zname -> xname (import Y), Bob xname -> kname (X again):
    # undoing X gives xname to Ann only, Bob's row is a username_taken conflict, and nothing fails.
    d, tag = domain(), uuid.uuid4().hex[:8]
    x_name, y_name, z_name, k_name = (f"{n}-{tag}" for n in ("xname", "yname", "zname", "kname"))
    first, undone, between = (str(uuid.uuid4()) for _ in range(3))
    await apply_rows(db, rows(first, {"email": f"a@{d}", "first_name": "A", "username": x_name},
                              {"email": f"b@{d}", "first_name": "B", "username": z_name}))
    await apply_rows(db, rows(undone, {"email": f"a@{d}", "first_name": "A", "username": y_name}))
    await apply_rows(db, rows(between, {"email": f"b@{d}", "first_name": "B", "username": x_name}))
    second_chunk = rows(undone, {"email": f"x@{d}", "first_name": "X"}, {"email": f"b@{d}", "first_name": "B",
                                                                         "username": k_name})[1:]  # row 2 only
    await apply_rows(db, second_chunk)

    results = await undo_share(db, share(undone))

    assert [(r.row, r.outcome, [e.code for e in r.errors]) for r in results] == [
        (1, Outcome.RESTORED, []), (2, Outcome.CONFLICT, ["username_taken"])]
    assert {e: c["username"] for e, c in (await stored(db, d)).items()} == {f"a@{d}": x_name, f"b@{d}": k_name}


async def test_a_username_freed_by_a_deleted_client_is_given_back(db):
    # Finding 7: one import renames Ann ann -> ann.lee and creates Bob as `ann`: undo deletes Bob, Ann is ann again.
    d, tag = domain(), uuid.uuid4().hex[:8]
    first, undone = str(uuid.uuid4()), str(uuid.uuid4())
    await apply_rows(db, rows(first, {"email": f"ann@{d}", "first_name": "Ann", "username": f"ann-{tag}"}))
    await apply_rows(db, rows(undone, {"email": f"ann@{d}", "first_name": "Ann", "username": f"ann.lee-{tag}"},
                              {"email": f"bob@{d}", "first_name": "Bob", "username": f"ann-{tag}"}))

    results = await undo_share(db, share(undone))

    assert [(r.row, r.outcome, r.errors) for r in results] == [(1, Outcome.RESTORED, ()), (2, Outcome.DELETED, ())]
    assert {e: c["username"] for e, c in (await stored(db, d)).items()} == {f"ann@{d}": f"ann-{tag}"}


async def test_a_failed_import_is_undone_only_once_every_row_has_its_result(db):
    # Finding 5: an undo of an import failed at its deadline was accepted with a total of its rows written so
    # far; its late rows were then taken back too (deleted 3 of a total of 2).
    from shared.tables import import_jobs, job_parts

    d, job, now = domain(), str(uuid.uuid4()), datetime.now(UTC)
    await apply_rows(db, rows(job, {"email": f"a@{d}", "first_name": "A"}, {"email": f"b@{d}", "first_name": "B"}))
    async with db.begin() as conn:
        await conn.execute(import_jobs.insert().values(
            id=job, file_name="a.csv", source="topic", requested_by="t", mode="upsert", dry_run=False, status="failed",
            total=3, created=2, updated=0, unchanged=0, rejected=0, warnings=[], received_at=now, finished_at=now))
        await conn.execute(job_parts.insert().values(job_id=job, first_row=1, created=2, updated=0, unchanged=0,
                                                     rejected=0))
        refused = undo.refusal(await undo.undo_state(conn, job), None, now, 30)
        assert (refused.code, "1 of its 3 rows" in refused.message) == ("not_finished", True)
    async with db.begin() as conn:
        await conn.execute(job_parts.insert().values(job_id=job, first_row=3, created=0, updated=0, unchanged=0,
                                                     rejected=1))  # row 3 came late, and was rejected
        assert undo.refusal(await undo.undo_state(conn, job), None, now, 30) is None
