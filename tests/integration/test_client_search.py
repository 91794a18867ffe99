"""Searching clients, on SQLite (FTS5 trigram) and PostgreSQL (pg_trgm): plain text, found by an index,
kept in step with every write, bounded. Each test runs on both databases."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, text, update

from services.api import readside
from shared import search
from shared.db import create_reader, create_tables, insert_for
from shared.tables import clients

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


async def seeded(db) -> None:
    async with db.begin() as conn:
        await conn.execute(clients.insert(), PEOPLE)


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


async def test_the_index_follows_every_write_of_a_client(db):
    await seeded(db)
    carla = PEOPLE[4]
    insert = insert_for(db, clients)
    async with db.begin() as conn:  # the writer's upsert: the same email, a new last name
        changed = {**carla, "last_name": "Byrne", "id": str(uuid.uuid4())}
        await conn.execute(insert.values(changed).on_conflict_do_update(
            index_elements=[clients.c.email], set_={"last_name": insert.excluded.last_name}))
    assert (await found(db, "o'hara"))[0] == []
    assert (await found(db, "byrne"))[0] == ["carla"]
    async with db.begin() as conn:
        await conn.execute(update(clients).where(clients.c.username == "carla").values(project="other"))
        await conn.execute(delete(clients).where(clients.c.username == "annsmith"))
    assert (await found(db, "byrne"))[0] == ["carla"]
    assert (await found(db, "smith"))[0] == []


async def test_a_search_finds_at_most_max_matches_and_says_when_there_are_more(db):
    many = [client("Bulk", f"Row{i}", f"bulk{i}@many.example.com", f"bulk{i}", i) for i in range(search.MAX_MATCHES + 5)]
    async with db.begin() as conn:
        await conn.execute(clients.insert(), many)
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
            await conn.exec_driver_sql("DROP TABLE clients_search")
            for trigger in ("insert", "update", "delete"):
                await conn.exec_driver_sql(f"DROP TRIGGER clients_search_{trigger}")
        else:
            for column in ("first_name", "last_name", "email", "username"):
                await conn.exec_driver_sql(f"DROP INDEX ix_clients_{column}_trgm")
        await conn.execute(text("DROP INDEX ix_clients_updated_at"))
    await seeded(db)
    await create_tables(db)
    assert (await found(db, "smith"))[0] == ["annsmith"]
    async with db.connect() as conn:
        if db.dialect.name == "sqlite":
            plan = " ".join(str(r[-1]) for r in await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT * FROM clients ORDER BY updated_at DESC, email LIMIT 50"))
            assert "ix_clients_updated_at" in plan and "TEMP B-TREE" not in plan, plan


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
