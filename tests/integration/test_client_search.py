"""Searching clients, on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm): plain text, found by an index,
kept in step with the writer's every write, bounded. Each test runs on both databases."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, text, update
from sqlalchemy.exc import OperationalError

from services.api import readside
from services.writer.plan import PendingRow
from services.writer.upsert import apply_rows
from shared import search
from shared.db import create_reader, create_tables
from shared.events import AcceptedRow, ClientValues, ImportOptions
from shared.stage import is_transient
from shared.tables import clients

from .overlap import works_beside

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
async def no_clients(db) -> None:
    """PostgreSQL's database lives for the session: each test here starts with no clients (no other test keeps any)."""
    async with db.begin() as conn:
        await conn.execute(delete(clients))


def client(first: str, last: str | None, email: str, username: str, age_s: int = 0) -> dict:
    moment = NOW - timedelta(seconds=age_s)
    return dict(id=str(uuid.uuid4()), email=email, username=username, first_name=first, middle_name=None, last_name=last,
                project="p", desk="sales", type="personal", created_at=moment, updated_at=moment)


PEOPLE = [
    client("Ann", "Smith", "ann.smith@acme.example.com", "annsmith", 1),
    client("Jo", "Müller", "jo@mueller.example.org", "jom", 2),
    client("Zoë", "Ng", "zoe.ng@ng.example.net", "zng", 3),
    client("Bob", None, "bob100@shop.example.com", "bob_the_builder", 4),
    client("Carla", "O'Hara", "carla@ohara.example.com", "carla", 5),
    client("Per%cent", "Under_score", "pc@odd.example.com", "percent", 6),
]


async def seeded(db, people: list[dict] = PEOPLE) -> None:
    """The clients inserted as the writer does: then, in the same transaction, the index catches up."""
    async with db.begin() as conn:
        await conn.execute(clients.insert(), people)
        await search.catch_up(conn)


async def found(db, q: str, limit: int = 50, offset: int = 0) -> tuple[list[str], int, bool]:
    async with db.connect() as conn:
        items, total, exact = await readside.search_clients(conn, q, limit, offset)
    return [c["username"] for c in items], total, exact


async def test_a_search_finds_the_text_inside_a_name_an_email_or_a_username_whatever_its_case(db):
    await seeded(db)
    assert (await found(db, "smith"))[0] == ["annsmith"]  # last name
    assert (await found(db, "NN.S"))[0] == ["annsmith"]  # inside the email, any case
    assert (await found(db, "MÜLL"))[0] == ["jom"]  # non-ASCII letters fold too
    assert (await found(db, "zoë"))[0] == ["zng"]
    assert (await found(db, "the_bui"))[0] == ["bob_the_builder"]  # inside the username
    assert (await found(db, "o'hara"))[0] == ["carla"]  # a quote is just a character
    assert (await found(db, ".example.com"))[0] == ["annsmith", "bob_the_builder", "carla", "percent"]  # newest first
    assert await found(db, "nobody-like-this") == ([], 0, True)
    assert (await found(db, "  "))[1] == len(PEOPLE)  # blank: every client


async def test_wildcards_and_operators_are_plain_text(db):
    await seeded(db)
    for pattern in ("%", "_", "%%%", "___", "a%n", "a_n", "%.%", "*", "ann*", '"', 'ann" OR "bob', "NOT ann", "ann AND", "^ann"):
        names, total, _ = await found(db, pattern)
        assert names == [] and total == 0, (pattern, names)
    assert (await found(db, "er%ce"))[0] == ["percent"]  # a real percent sign is found as itself
    assert (await found(db, "r_sc"))[0] == ["percent"]


async def test_one_or_two_characters_match_the_start_of_an_email_or_a_username(db):
    await seeded(db)
    assert (await found(db, "ca"))[0] == ["carla"]
    assert (await found(db, "B"))[0] == ["bob_the_builder"]
    assert (await found(db, "jo"))[0] == ["jom"]
    assert (await found(db, "ng"))[0] == []  # inside, not at the start: three characters are needed for that
    assert (await found(db, "%"))[0] == []


async def test_the_index_follows_every_write_of_the_writer_and_every_deletion(db):
    await seeded(db)
    carla = PEOPLE[4]
    row = AcceptedRow(row=1, line=2, values=ClientValues(email=carla["email"], first_name="Carla", last_name="Byrne"),
                      original={})
    await apply_rows(db, [PendingRow(f"job-{uuid.uuid4()}", ImportOptions(), row)])  # the writer: a new last name
    assert (await found(db, "o'hara"))[0] == []
    assert (await found(db, "byrne"))[0] == ["carla"]
    new = AcceptedRow(row=2, line=3, values=ClientValues(email="dan@new.example.com", first_name="Dan"), original={})
    await apply_rows(db, [PendingRow(f"job-{uuid.uuid4()}", ImportOptions(), new)])  # the writer: a new client
    assert (await found(db, "new.example"))[0] == ["dan"]
    async with db.begin() as conn:
        await conn.execute(update(clients).where(clients.c.username == "carla").values(project="other"))
        await conn.execute(delete(clients).where(clients.c.username == "annsmith"))
    assert (await found(db, "byrne"))[0] == ["carla"]
    assert (await found(db, "smith"))[0] == []
    if db.dialect.name == "sqlite":
        async with db.connect() as conn:  # FTS5's own check that the index matches the clients exactly
            await conn.exec_driver_sql("INSERT INTO clients_search(clients_search, rank) VALUES ('integrity-check', 1)")


async def test_a_search_finds_at_most_max_matches_and_says_when_there_are_more(db):
    many = [client("Bulk", f"Row{i}", f"bulk{i}@many.example.com", f"bulk{i}", i) for i in range(search.MAX_MATCHES + 5)]
    await seeded(db, many)
    names, total, exact = await found(db, "many.example", limit=2)
    assert (len(names), total, exact) == (2, search.MAX_MATCHES, False)
    names, total, exact = await found(db, "bulk10")  # bulk10, bulk100..bulk109, bulk1000..bulk1004
    assert (total, exact) == (16, True) and names[0] == "bulk10"
    assert (await found(db, "", limit=1))[1:] == (len(many), True)


async def test_a_search_is_answered_by_an_index_not_by_reading_every_client(db):
    await seeded(db)
    async with db.connect() as conn:
        if db.dialect.name == "sqlite":
            plans = [" ".join(str(r[-1]) for r in await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT rowid FROM clients_search WHERE clients_search MATCH '\"smith\"' "
                "ORDER BY rowid DESC LIMIT 1001"))]
            assert "VIRTUAL TABLE INDEX" in plans[0], plans
        else:
            await conn.exec_driver_sql("SET enable_seqscan = off")  # a tiny table would be scanned anyway
            for column in ("first_name", "last_name", "email", "username"):
                plan = " ".join(r[0] for r in await conn.exec_driver_sql(
                    f"EXPLAIN SELECT id FROM clients WHERE {column} ILIKE '%smith%'"))
                assert f"ix_clients_{column}_trgm" in plan, plan


async def test_a_database_made_before_the_search_index_is_indexed_when_the_services_start(db):
    async with db.begin() as conn:
        if db.dialect.name == "sqlite":
            for name in ("clients_search", "clients_search_state"):
                await conn.exec_driver_sql(f"DROP TABLE {name}")
            await conn.exec_driver_sql("DROP TRIGGER clients_search_removed")
        else:
            for column in ("first_name", "last_name", "email", "username"):
                await conn.exec_driver_sql(f"DROP INDEX ix_clients_{column}_trgm")
        await conn.execute(text("DROP INDEX ix_clients_updated_at"))
    async with db.begin() as conn:
        await conn.execute(clients.insert(), PEOPLE)
    await create_tables(db)
    assert (await found(db, "smith"))[0] == ["annsmith"]
    async with db.connect() as conn:
        if db.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM clients ORDER BY updated_at DESC, email LIMIT 50"))
            assert "ix_clients_updated_at" in plan and "TEMP B-TREE" not in plan, plan


async def test_clients_inserted_outside_the_writer_are_found_once_the_index_catches_up(db):
    """A script's insert is indexed by the writer's next batch or at the next start (`create_tables`)."""
    async with db.begin() as conn:
        await conn.execute(clients.insert(), PEOPLE[:2])
    await create_tables(db)  # a start
    assert (await found(db, "smith"))[0] == ["annsmith"]
    async with db.begin() as conn:
        await conn.execute(clients.insert(), PEOPLE[2:4])
        await search.catch_up(conn)  # the writer's next batch
    assert (await found(db, "zoë"))[0] == ["zng"]
    assert (await found(db, "the_bui"))[0] == ["bob_the_builder"]


async def test_a_rowid_given_again_after_the_newest_client_went_is_indexed(db):
    """SQLite reuses the largest rowid once its row is deleted: the watermark comes down with it."""
    await seeded(db, PEOPLE[:2])
    async with db.begin() as conn:
        await conn.execute(delete(clients).where(clients.c.username == "jom"))  # the newest rowid
    await seeded(db, PEOPLE[2:3])
    assert (await found(db, "zoë"))[0] == ["zng"]
    assert (await found(db, "müller"))[0] == []
    if db.dialect.name == "sqlite":
        async with db.connect() as conn:  # FTS5's own check that the index matches the clients exactly
            await conn.exec_driver_sql("INSERT INTO clients_search(clients_search, rank) VALUES ('integrity-check', 1)")


async def test_the_triggers_of_the_earlier_index_give_way_to_the_watermark(db):
    """A database indexed row by row by the earlier triggers keeps its index and gets the watermark."""
    if db.dialect.name != "sqlite":
        pytest.skip("the earlier triggers were SQLite's")
    columns = "first_name, last_name, email, username"
    async with db.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE clients_search_state")
        await conn.exec_driver_sql("DROP TRIGGER clients_search_removed")
        await conn.exec_driver_sql(
            f"CREATE TRIGGER clients_search_insert AFTER INSERT ON clients BEGIN INSERT INTO clients_search(rowid, "
            f"{columns}) VALUES (new.rowid, new.first_name, new.last_name, new.email, new.username); END")
        await conn.execute(clients.insert(), PEOPLE)
    await create_tables(db)
    assert (await found(db, "smith"))[0] == ["annsmith"]
    async with db.connect() as conn:
        names = {r[0] for r in await conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
        assert names == {"clients_search_removed"}, names
        await conn.exec_driver_sql("INSERT INTO clients_search(clients_search, rank) VALUES ('integrity-check', 1)")


async def test_the_api_reads_on_connections_that_cannot_write(db):
    reader = create_reader(db.url)
    try:
        async with reader.connect() as conn:
            assert (await readside.search_clients(conn, "nobody", 1, 0))[1] == 0
            try:
                await conn.execute(clients.insert(), [PEOPLE[0]])
            except Exception as error:  # SQLite: attempt to write a readonly database; PostgreSQL: read-only transaction
                assert "read" in str(error).lower() and "only" in str(error).lower(), error
            else:
                raise AssertionError("a reader wrote a client")
    finally:
        await reader.dispose()


async def test_the_writer_s_catch_up_indexes_new_clients_and_hands_back_what_was_built_beside_it(db):
    async with db.begin() as conn:
        await conn.execute(clients.insert(), PEOPLE)
        built = await search.catch_up_beside(conn, lambda: "the ledger's parameters")
    assert built == "the ledger's parameters"
    assert (await found(db, "smith"))[0] == ["annsmith"]
    assert (await found(db, "zoë"))[0] == ["zng"]


async def test_work_that_fails_beside_the_catch_up_rolls_the_whole_batch_back(db):
    def failing() -> None:
        raise ValueError("a bug in building the parameters")

    with pytest.raises(ValueError, match="a bug"):
        async with db.begin() as conn:
            await conn.execute(clients.insert(), PEOPLE[:2])
            await search.catch_up_beside(conn, failing)
    assert (await found(db, "smith"))[0] == []
    await seeded(db, PEOPLE[2:3])  # the index is still whole: the next batch's clients are found
    assert (await found(db, "zoë"))[0] == ["zng"]


async def test_on_sqlite_the_work_runs_while_the_index_fills_not_after_it(db):
    """The point of `catch_up_beside`: the writer's Python and SQLite's indexing at the same time. The
    work below waits until SQLite, working on the catch-up, calls back: sequential code would never see it."""
    if db.dialect.name != "sqlite":
        pytest.skip("on PostgreSQL the server keeps the index: there is no catch-up to overlap")
    many = [client(f"Name{i}", f"Last{i}", f"person{i}@overlap.example.com", f"person{i}") for i in range(3000)]
    async with db.begin() as conn:
        await conn.execute(clients.insert(), many)
        overlapped = await works_beside(conn, lambda work: search.catch_up_beside(conn, work), every=1000)
    assert overlapped, "the work ran while SQLite was idle"
    assert (await found(db, "person2999@"))[0] == ["person2999"]


async def test_a_full_disk_during_the_catch_up_is_the_database_s_error_the_stage_runner_waits_out(db):
    """Raised as SQLAlchemy raises it (the catch-up runs on the driver directly): `is_transient` knows it,
    so the writer waits for the disk instead of blaming the rows."""
    if db.dialect.name != "sqlite":
        pytest.skip("on PostgreSQL the server keeps the index: there is no catch-up")
    many = [client(f"Name{i}", f"Last{i}", f"person{i}@full.example.com", f"person{i}") for i in range(3000)]
    with pytest.raises(OperationalError) as caught:
        async with db.begin() as conn:
            await conn.execute(clients.insert(), many)
            pages = await conn.scalar(text("PRAGMA page_count"))
            await conn.exec_driver_sql(f"PRAGMA max_page_count={pages + 2}")  # the disk fills up
            await search.catch_up_beside(conn, lambda: None)
    assert "full" in str(caught.value)
    assert is_transient(caught.value)
