"""Engines and the one dialect-specific piece the services need: an upsert-capable INSERT."""

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from pydantic_core import PydanticSerializationError, to_json
from sqlalchemy import Executable, Insert, Table, event, inspect
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.schema import CreateColumn

from . import search
from .tables import metadata

T = TypeVar("T")


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # A plan per execution: the writer's look-ups by IN lists of 500 keys, planned once generically (asyncpg
        # prepares every statement), became sequential scans comparing each row with each of the 500
        # parameters, slower as the table grew (measured: 200 rows/s through the pipeline; a 5000-row batch
        # took 4 s at 20,000 clients and growing, against a steady 0.7 s with a plan per execution).
        return create_async_engine(url, pool_size=5, max_overflow=5, json_serializer=json_text,
                                   connect_args={"server_settings": {"plan_cache_mode": "force_custom_plan"}})
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": 60}, json_serializer=json_text)
    _sqlite_write_ahead(engine)
    return engine


def json_text(value: Any) -> str:
    """A JSON column's text: pydantic-core's encoder, a quarter of `json.dumps`'s time for the change log's
    dicts, which the writer stores for every row. Compact, UTF-8 as it is (the database's text is UTF-8).
    What it cannot write as UTF-8 (a lone surrogate, which Python's own JSON parser lets in) goes through
    `json.dumps`, escaped as before, rather than failing the transaction."""
    try:
        return to_json(value).decode()
    except PydanticSerializationError:
        return json.dumps(value)


def _sqlite_write_ahead(engine: AsyncEngine) -> None:
    # WAL lets readers (the API) work while a service writes; BEGIN IMMEDIATE takes the write lock
    # up front so two services never deadlock upgrading a read to a write.
    _on_connect_run(engine, "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA busy_timeout=60000")

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection) -> None:
        # Readers (see `reading`) begin deferred: with WAL they read beside a writer, taking no lock.
        read_only = connection.get_execution_options().get("read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


READER_POOL_SIZE = 8  # connections the API reads on; requests beyond wait for one
_READER_POOL_WAIT_S = 10.0  # a read that waits longer for a connection fails (503), never hangs


def create_reader(url: str | URL, pool_size: int = READER_POOL_SIZE) -> AsyncEngine:
    """An engine of its own for a service that only reads (the API): its own pool, so its reads never
    queue for a connection behind the pipeline's writes, and connections that refuse to write
    (SQLite `query_only`, PostgreSQL read-only transactions), so a read never takes a write lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, pool_size=pool_size, max_overflow=0, pool_timeout=_READER_POOL_WAIT_S,
                                   connect_args={"server_settings": {
                                       "default_transaction_read_only": "on",
                                       # A plan per search text: a generic plan cannot tell a rare text (the trigram
                                       # index) from a common one, and scanned 250,000 clients for 700 ms.
                                       "plan_cache_mode": "force_custom_plan",
                                   }})
    # Autocommit, and nothing to undo when a connection goes back to the pool: each read is one statement
    # that takes no lock (WAL), and every BEGIN or ROLLBACK saved is a trip to aiosqlite's thread saved.
    engine = create_async_engine(parsed, pool_size=pool_size, max_overflow=0, pool_timeout=_READER_POOL_WAIT_S,
                                 pool_reset_on_return=None, connect_args={"timeout": 60})

    _on_connect_run(engine, "PRAGMA query_only=ON", "PRAGMA busy_timeout=5000")
    return engine


def _on_connect_run(engine: AsyncEngine, *pragmas: str) -> None:
    """Each new SQLite connection: our own transaction control (see `_sqlite_write_ahead`), then the pragmas."""
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in pragmas:
            cursor.execute(pragma)
        cursor.close()


def reading(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool) for transactions that only read: they never wait for the write lock."""
    return engine.execution_options(read_only=True)


async def has_tables(engine: AsyncEngine) -> bool:
    async with reading(engine).connect() as conn:
        return await conn.run_sync(lambda sync: inspect(sync).has_table("import_jobs"))


def insert_for(engine_or_dialect_name: AsyncEngine | str, table: Table) -> Insert:
    """The dialect's own INSERT, which has on_conflict_do_update / on_conflict_do_nothing."""
    name = engine_or_dialect_name if isinstance(engine_or_dialect_name, str) else engine_or_dialect_name.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported database dialect {name!r}: use SQLite or PostgreSQL")


def as_utc(moment: datetime | None) -> datetime | None:
    """SQLite hands timestamps back without their zone; we always write them in UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


async def create_tables(engine: AsyncEngine) -> None:
    """Create what is missing. Services started together race here: the loser of a race finds the
    other's table made between its check and its CREATE, and simply checks again."""
    for attempt in range(3):
        try:
            async with engine.begin() as connection:
                await connection.run_sync(metadata.create_all)
                await connection.run_sync(_add_missing_columns)
                await connection.run_sync(_create_missing_indexes)
                await search.install(connection)
            return
        except (OperationalError, ProgrammingError, IntegrityError):
            if attempt == 2:
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


def _create_missing_indexes(connection) -> None:
    """create_all makes a table's indexes only with the table: an index added since is made here."""
    for table in metadata.sorted_tables:
        for index in table.indexes:
            index.create(connection, checkfirst=True)


async def execute_many(
    conn: AsyncConnection, statement: Executable, rows: Sequence[Mapping[str, Any]], same: Mapping[str, Any] | None = None
) -> None:
    """One statement, many rows, bound as plain tuples; `same`: values every row shares (given once, not per row)."""
    await execute_bound(conn, bind_many(conn.dialect, statement, rows, same))


class BoundRows(NamedTuple):
    """A statement in the dialect's own SQL and its rows of parameters, ready for the driver's executemany."""

    sql: str
    params: list[tuple]


def bind_many(
    dialect: Dialect, statement: Executable, rows: Sequence[Mapping[str, Any]], same: Mapping[str, Any] | None = None
) -> BoundRows | None:
    """What `execute_many` sends, built here in plain Python (None for no rows), so that a caller may build
    it while the database works on something else (the writer, beside the search index's catch-up).

    The statement is compiled once by the dialect (so it stays dialect-neutral Core); only the columns
    whose type needs converting (timestamps on SQLite, JSON) go through the dialect's converter.
    SQLAlchemy's per-row parameter handling costs more than the database here, so the parameters are
    built a column at a time and zipped into rows.
    """
    if not rows:
        return None
    same = same or {}
    compiled = statement.compile(dialect=dialect)
    names = compiled.positiontup
    if names is None:
        raise ValueError(f"{dialect.name} does not use positional parameters; execute_many needs them")
    columns = [_column(rows, name, same, _bind_processor(compiled, name, dialect)) for name in names]
    return BoundRows(str(compiled), list(zip(*columns, strict=True)))


async def execute_bound(conn: AsyncConnection, bound: BoundRows | None) -> None:
    if bound is not None:
        await conn.exec_driver_sql(bound.sql, bound.params)


async def commit_beside(conn: AsyncConnection, work: Callable[[], T]) -> T:
    """Commit `conn`'s transaction while `work` (plain Python that touches no database) runs: its answer,
    once the commit has succeeded.

    SQLite commits on aiosqlite's thread without Python's interpreter lock, PostgreSQL in its server, so
    the writer builds (and encodes) its results beside the commit instead of after it. Should `work`
    fail, the transaction is committed all the same: the caller fails as after a crash, and a batch
    tried again finds its rows recorded."""
    committing = asyncio.create_task(conn.commit())
    try:
        await asyncio.sleep(0)  # the commit reaches the database before the work starts
        answer = work()
    finally:
        await committing
    return answer


def _bind_processor(compiled, name: str, dialect) -> Any:
    return compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)


def _column(rows: Sequence[Mapping[str, Any]], name: str, same: Mapping[str, Any], processor) -> list:
    """One parameter's value for every row, converted where its type needs it."""
    if name in same:
        value = same[name]
        return [value if processor is None else processor(value)] * len(rows)
    values = list(map(itemgetter(name), rows))
    if processor is None:
        return values
    return list(map(_memoised(processor), values))


_UNHASHABLE = frozenset({dict, list})


def _memoised(processor):
    """A converter is a pure function of the value, and a batch repeats its values (one timestamp, NULL
    for most JSON columns): each distinct value is converted once."""
    memo: dict = {}

    def convert(value):
        if value.__class__ in _UNHASHABLE:  # a JSON column's dict or list: converted each time
            return processor(value)
        key = (value.__class__, value)  # the type too: True == 1, and they may convert apart
        try:
            return memo[key]
        except KeyError:
            converted = memo[key] = processor(value)
            return converted
        except TypeError:  # unhashable all the same (a tuple holding a dict)
            return processor(value)

    return convert


def _add_missing_columns(connection) -> None:
    """A database made by an earlier version gets the columns added since: tables only ever gain
    nullable columns (the upgrade path the project promises), added here with ALTER TABLE."""
    inspector = inspect(connection)
    for table in metadata.sorted_tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in (c for c in table.columns if c.name not in present):
            if not column.nullable:
                raise RuntimeError(f"{table.name}.{column.name} is missing and cannot be added: it may not be empty")
            spec = CreateColumn(column).compile(dialect=connection.dialect)
            connection.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {spec}")
