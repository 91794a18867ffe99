"""Searching clients by name, email or username: an index answers, never a scan of the table.

A search text of three characters or more matches clients whose first name, last name, email or
username *contains* it, case-insensitively, as plain text (no wildcards). On SQLite an FTS5 table
with the trigram tokenizer (`clients_search`, external content: it indexes `clients` by rowid) holds
every client up to a watermark, the rowid `clients_search_state.indexed_through`:
- a new client (a rowid past the watermark) is indexed in bulk by `catch_up`, which the writer runs in
  the transaction that upserts (`catch_up_beside`: while its Python builds the rest of the batch), so
  its clients are found from the moment they are committed. One INSERT ... SELECT over the batch
  costs about a fifth of what a trigger per row cost (measured: ~9 µs a row against ~50 µs), which
  made the index the writer's largest cost;
- a change to a client's searched columns is indexed by the writer too, in bulk, in the same
  transaction (`reindexed`: the old entries out before the upsert, the new ones in after it), and a
  deletion by a trigger. No trigger on UPDATE: its mere presence doubled the upsert's cost, even for
  the rows the upsert inserts (measured: ~23 µs a row against ~12);
- a client inserted by anything but the writer (a script, a restored backup) is found once the next
  writer batch commits or the services start (`install` catches up too); a client *changed* by
  anything but the writer keeps its old index entries until `reindexed` is used for it.
On PostgreSQL GIN indexes of the `pg_trgm` extension serve `ILIKE '%text%'`, kept by PostgreSQL itself.

A trigram index cannot find one or two characters, so a shorter text matches clients whose email
or username *starts with* it: a range on their unique indexes.

A search finds at most `MAX_MATCHES` clients (the newest first on SQLite): more than that is not
a list a person reads, and counting all of 250,000 matches would cost what the index saved.

SQLite's VACUUM may renumber the rowids of `clients` (its key is not an integer): after a VACUUM,
rebuild the index with `INSERT INTO clients_search(clients_search) VALUES('rebuild')` and set
`clients_search_state.indexed_through` to `max(rowid)` of `clients`.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import TypeVar

import aiosqlite
from sqlalchemy import Select, TextClause, bindparam, literal_column, or_, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import clients

__all__ = ["MAX_MATCHES", "MIN_SUBSTRING", "SEARCHED", "install", "catch_up", "catch_up_beside", "reindexed", "matching_keys", "key_column"]

log = logging.getLogger("clients_import.search")
T = TypeVar("T")

MAX_MATCHES = 1000  # clients one search finds and counts; `total` says at most this many
_SLICE = 500  # emails per IN (...) list
MIN_SUBSTRING = 3  # characters a trigram index can find inside a value; shorter texts match prefixes

SEARCHED = _SEARCHED = ("first_name", "last_name", "email", "username")  # the columns a search looks in
_FTS = "clients_search"

_STATE = f"{_FTS}_state"
_INDEXED = f"(SELECT indexed_through FROM {_STATE})"
_OLD = ", ".join("old." + c for c in _SEARCHED)
_NEW = ", ".join("new." + c for c in _SEARCHED)

_SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {_FTS} USING fts5("
    f"{', '.join(_SEARCHED)}, content='clients', content_rowid='rowid', tokenize='trigram')",
    f"CREATE TABLE IF NOT EXISTS {_STATE} (id INTEGER PRIMARY KEY CHECK (id = 1), indexed_through INTEGER NOT NULL)",
    # SQLite gives a new row the largest rowid plus one: when the largest indexed one goes, the watermark
    # comes down with it, so a rowid given again is past the watermark and gets indexed.
    f"CREATE TRIGGER IF NOT EXISTS {_FTS}_removed AFTER DELETE ON clients WHEN old.rowid <= {_INDEXED} BEGIN "
    f"INSERT INTO {_FTS}({_FTS}, rowid, {', '.join(_SEARCHED)}) VALUES ('delete', old.rowid, {_OLD}); "
    f"UPDATE {_STATE} SET indexed_through = (SELECT coalesce(max(rowid), 0) FROM clients) "
    f"WHERE indexed_through > (SELECT coalesce(max(rowid), 0) FROM clients); END",
)
# The triggers of the version before the watermark, which indexed every insert and update one row at a time:
# the mere presence of an AFTER UPDATE trigger doubled the cost of the writer's upsert, even of rows it inserts.
_OLD_TRIGGERS = tuple(f"DROP TRIGGER IF EXISTS {_FTS}_{kind}" for kind in ("insert", "update", "delete", "changed"))

_POSTGRES_INDEXES = tuple(
    f"CREATE INDEX IF NOT EXISTS ix_clients_{c}_trgm ON clients USING gin ({c} gin_trgm_ops)" for c in _SEARCHED
) + (
    # Byte-wise order, so a short text's prefix is an index range whatever the database's collation.
    'CREATE INDEX IF NOT EXISTS ix_clients_email_bytes ON clients ((email COLLATE "C"))',
)


async def install(conn: AsyncConnection) -> None:
    """Create the search index where it is missing (after the tables; idempotent)."""
    if conn.dialect.name == "sqlite":
        await _install_sqlite(conn)
    elif conn.dialect.name == "postgresql":
        await _install_postgres(conn)


async def _install_sqlite(conn: AsyncConnection) -> None:
    indexed = await conn.scalar(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": _FTS})
    watermark = await conn.scalar(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": _STATE})
    for statement in (*_OLD_TRIGGERS, *_SQLITE_DDL):
        await conn.exec_driver_sql(statement)
    if not watermark:
        # An index kept by the earlier triggers holds every client; a new one holds none yet.
        start = "(SELECT coalesce(max(rowid), 0) FROM clients)" if indexed else "0"
        await conn.exec_driver_sql(f"INSERT INTO {_STATE} (id, indexed_through) VALUES (1, {start})")
    await catch_up(conn)


@contextlib.asynccontextmanager
async def reindexed(conn: AsyncConnection, emails: Collection[str]):
    """Around the writer's upsert: the clients of these emails, whose searched columns it changes, are
    taken out of the index before (with the values they had) and put back after. In bulk, in the
    caller's transaction, which then indexes its new clients (`catch_up` or `catch_up_beside`)."""
    if conn.dialect.name != "sqlite":
        yield
        return
    columns = ", ".join(_SEARCHED)
    emails = sorted(emails)
    for start in range(0, len(emails), _SLICE):
        await conn.execute(text(
            f"INSERT INTO {_FTS}({_FTS}, rowid, {columns}) SELECT 'delete', rowid, {columns} FROM clients "
            f"WHERE email IN :emails AND rowid <= {_INDEXED}").bindparams(bindparam("emails", expanding=True)),
            {"emails": emails[start : start + _SLICE]})
    yield
    for start in range(0, len(emails), _SLICE):
        await conn.execute(text(
            f"INSERT INTO {_FTS}(rowid, {columns}) SELECT rowid, {columns} FROM clients "
            f"WHERE email IN :emails AND rowid <= {_INDEXED}").bindparams(bindparam("emails", expanding=True)),
            {"emails": emails[start : start + _SLICE]})


_CATCH_UP = (f"INSERT INTO {_FTS}(rowid, {', '.join(_SEARCHED)}) SELECT rowid, {', '.join(_SEARCHED)} FROM clients "
             f"WHERE rowid > {_INDEXED}")
_RAISE_WATERMARK = f"UPDATE {_STATE} SET indexed_through = coalesce((SELECT max(rowid) FROM clients), indexed_through)"


async def catch_up(conn: AsyncConnection) -> None:
    """Index the clients past the watermark, in the caller's transaction: one statement for them all.
    The writer does it after each upsert (`catch_up_beside`); on PostgreSQL there is nothing to do."""
    if conn.dialect.name != "sqlite":
        return
    await conn.exec_driver_sql(_CATCH_UP)
    await conn.exec_driver_sql(_RAISE_WATERMARK)


async def catch_up_beside(conn: AsyncConnection, work: Callable[[], T]) -> T:
    """`catch_up`, with `work` done meanwhile: its result. `work` is plain Python that touches no database.

    The catch-up is one statement, and SQLite runs a statement on aiosqlite's thread without Python's
    interpreter lock (the trigram tokenizer is C), so the writer's Python runs on one core while the
    index fills on the other, instead of each waiting for the other: per 100,000 rows, about 1 s of
    indexing beside about 0.8 s of building the ledger's and the change log's parameters. Nothing
    else may use the connection until this returns. Never beside an `executemany`: that one takes the
    lock back for every row it binds, and each time waits for the other thread to let go of it."""
    driver = await _aiosqlite(conn)
    if driver is None:
        result = work()
        await catch_up(conn)
        return result
    indexing = asyncio.create_task(_execute(driver, _CATCH_UP, conn.dialect))
    try:
        await asyncio.sleep(0)  # the statement reaches the connection's thread before the work starts
        result = work()
    finally:
        await indexing  # also when the work failed: the transaction is rolled back only once it is done
    await conn.exec_driver_sql(_RAISE_WATERMARK)
    return result


async def _aiosqlite(conn: AsyncConnection):
    """The aiosqlite connection under `conn`, or None for any other database or driver."""
    if conn.dialect.name != "sqlite":
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    return driver if isinstance(driver, aiosqlite.Connection) else None


async def _execute(driver, statement: str, dialect) -> None:
    try:
        cursor = await driver.execute(statement)
    except dialect.loaded_dbapi.Error as error:  # raised as SQLAlchemy would: a full disk is waited out, not blamed on rows
        raise DBAPIError.instance(statement, None, error, dialect.loaded_dbapi.Error, dialect=dialect) from error
    await cursor.close()


async def _install_postgres(conn: AsyncConnection) -> None:
    try:
        async with conn.begin_nested():
            await conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as error:  # not allowed here: searches still answer, by scanning
        log.warning("pg_trgm is not available: client searches scan the table (CREATE EXTENSION pg_trgm as a superuser)",
                    extra={"step": "search.no_trgm", "error": type(error).__name__})
        await conn.exec_driver_sql('CREATE INDEX IF NOT EXISTS ix_clients_email_bytes ON clients ((email COLLATE "C"))')
        return
    for statement in _POSTGRES_INDEXES:
        await conn.exec_driver_sql(statement)


def key_column(dialect: str):
    """What `matching_keys` selects: the rowid on SQLite (the search index's key), the id elsewhere."""
    return literal_column("clients.rowid") if dialect == "sqlite" else clients.c.id


def matching_keys(dialect: str, search: str, limit: int = MAX_MATCHES) -> Select | TextClause:
    """A query of the keys (see `key_column`, as the column `key`) of at most `limit` clients the search text matches.
    `search` is plain text, already trimmed and not empty: no character in it is a wildcard or an operator."""
    if len(search) < MIN_SUBSTRING:
        return _prefix_query(dialect, search.lower()).limit(limit)
    if dialect == "sqlite":
        return select(literal_column("rowid").label("key")).select_from(text(_FTS)).where(
            text(f"{_FTS} MATCH :phrase").bindparams(phrase=_fts_phrase(search))
        ).order_by(literal_column("rowid").desc()).limit(limit)
    pattern = f"%{escape_like(search)}%"
    return select(clients.c.id.label("key")).where(or_(*(clients.c[c].ilike(pattern, escape="\\") for c in _SEARCHED))).limit(limit)


def _prefix_query(dialect: str, prefix: str):
    # Every string that starts with `prefix` sorts (byte-wise) between it and it followed by the last code point.
    high = prefix + "\U0010ffff"
    email = clients.c.email.collate("C") if dialect == "postgresql" else clients.c.email
    return select(key_column(dialect).label("key")).where(or_(
        (email >= prefix) & (email < high),
        (clients.c.username >= prefix) & (clients.c.username < high),
    ))


def _fts_phrase(search: str) -> str:
    """The text as one FTS5 string: inside double quotes nothing is an operator; a quote is doubled."""
    return '"' + search.replace('"', '""') + '"'


def escape_like(value: str) -> str:
    """`value` as a LIKE pattern that matches only itself (the escape character is a backslash)."""
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
