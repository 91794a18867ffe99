"""Searching clients by name, email or username: an index answers, never a scan of the table.

A search text of three characters or more matches clients whose first name, last name, email or
username *contains* it, case-insensitively, as plain text (no wildcards). On SQLite an FTS5 table
with the trigram tokenizer (`clients_search`, external content: it indexes `clients` by rowid) is
kept in step with `clients` by triggers, so every writer keeps it current in its own transaction.
On PostgreSQL GIN indexes of the `pg_trgm` extension serve `ILIKE '%text%'`.

A trigram index cannot find one or two characters, so a shorter text matches clients whose email
or username *starts with* it: a range on their unique indexes.

A search finds at most `MAX_MATCHES` clients (the newest first on SQLite): more than that is not
a list a person reads, and counting all of 250,000 matches would cost what the index saved.

SQLite's VACUUM may renumber the rowids of `clients` (its key is not an integer): after a VACUUM,
rebuild the index with `INSERT INTO clients_search(clients_search) VALUES('rebuild')`.
"""

import logging

from sqlalchemy import Select, TextClause, literal_column, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from .tables import clients

__all__ = ["MAX_MATCHES", "MIN_SUBSTRING", "install", "matching_keys", "key_column"]

log = logging.getLogger("clients_import.search")

MAX_MATCHES = 1000  # clients one search finds and counts; `total` says at most this many
MIN_SUBSTRING = 3  # characters a trigram index can find inside a value; shorter texts match prefixes

_SEARCHED = ("first_name", "last_name", "email", "username")
_FTS = "clients_search"

_SQLITE_DDL = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS {_FTS} USING fts5("
    f"{', '.join(_SEARCHED)}, content='clients', content_rowid='rowid', tokenize='trigram')",
    # An upsert that changes none of the searched columns (most re-imports) leaves the index alone.
    f"CREATE TRIGGER IF NOT EXISTS {_FTS}_insert AFTER INSERT ON clients BEGIN "
    f"INSERT INTO {_FTS}(rowid, {', '.join(_SEARCHED)}) VALUES (new.rowid, {', '.join('new.' + c for c in _SEARCHED)}); END",
    f"CREATE TRIGGER IF NOT EXISTS {_FTS}_delete AFTER DELETE ON clients BEGIN "
    f"INSERT INTO {_FTS}({_FTS}, rowid, {', '.join(_SEARCHED)}) VALUES ('delete', old.rowid, "
    f"{', '.join('old.' + c for c in _SEARCHED)}); END",
    f"CREATE TRIGGER IF NOT EXISTS {_FTS}_update AFTER UPDATE OF {', '.join(_SEARCHED)} ON clients "
    f"WHEN {' OR '.join(f'old.{c} IS NOT new.{c}' for c in _SEARCHED)} BEGIN "
    f"INSERT INTO {_FTS}({_FTS}, rowid, {', '.join(_SEARCHED)}) VALUES ('delete', old.rowid, "
    f"{', '.join('old.' + c for c in _SEARCHED)}); "
    f"INSERT INTO {_FTS}(rowid, {', '.join(_SEARCHED)}) VALUES (new.rowid, {', '.join('new.' + c for c in _SEARCHED)}); END",
)

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
    existed = await conn.scalar(text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"), {"name": _FTS})
    for statement in _SQLITE_DDL:
        await conn.exec_driver_sql(statement)
    if not existed:  # a database made before the search index: index the clients it already has
        await conn.exec_driver_sql(f"INSERT INTO {_FTS}({_FTS}) VALUES ('rebuild')")


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
