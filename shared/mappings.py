"""Column maps and saved mappings: their bounds, their shape on every front door, and their storage.

A column map says, for columns of a file as its header writes them, which client field each one is
(a field's column name or key, or fullName, shared/fields.py), or None to ignore the column. A saved
mapping is a column map kept under a name; every save is a new version, and the newest is used.

The API saves and reads them; the uploader, which reads the file, resolves the one a request names.
"""

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import Field, StringConstraints
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import as_utc
from .fields import target_of
from .tables import column_mappings

if TYPE_CHECKING:
    from .events import Issue

__all__ = ["MAP_MAX_COLUMNS", "MAP_COLUMN_MAX", "MAP_FIELD_MAX", "MAPPING_NAME_MAX", "MAPPING_NAME_PATTERN",
           "MAPPINGS_MAX", "VERSIONS_KEPT", "ColumnMap", "MappingName", "Saved", "combined_map",
           "unknown_mapping", "save", "newest", "listing", "remove"]

MAP_MAX_COLUMNS = 500  # entries in one column map: a file has at most MAX_COLUMNS (500 by default) columns
MAP_COLUMN_MAX = 200  # characters of a column name in a map: a header name has at most MAX_HEADER_CHARS (200)
MAP_FIELD_MAX = 64  # characters of a field name in a map (the longest real one has 10)
MAPPING_NAME_MAX = 64
# Letters, digits, '.', '_', '-', starting with a letter or digit: safe in a URL path and a shell.
MAPPING_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
MAPPINGS_MAX = 1000  # saved names in one deployment
VERSIONS_KEPT = 20  # versions kept per name: older ones are dropped at the next save

ColumnMap = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=MAP_COLUMN_MAX)],
         Annotated[str, StringConstraints(max_length=MAP_FIELD_MAX)] | None],
    Field(max_length=MAP_MAX_COLUMNS),
]
MappingName = Annotated[str, StringConstraints(pattern=MAPPING_NAME_PATTERN, max_length=MAPPING_NAME_MAX)]


def combined_map(saved: dict[str, str | None], given: dict[str, str | None]) -> dict[str, str | None]:
    """A saved mapping with the request's column_map over it, column by column: a column the request maps is
    mapped its way, and a field it gives a column no longer takes the saved mapping's column for it.

    Not capped at MAP_MAX_COLUMNS: each of the two is (so this has at most twice as many entries), and a saved
    mapping made for a partner's many files, with a few columns of this one mapped over it, is a fair request.
    Matching it is linear in its size and the header's (shared/reading.py), so the bound is there only."""
    given_fields = {target_of(f) for f in given.values() if f is not None} - {None}
    kept = {column: field for column, field in saved.items()
            if column not in given and (field is None or target_of(field) not in given_fields)}
    return {**kept, **given}


def unknown_mapping(name: str) -> "Issue":
    """Why a request naming a mapping nobody saved is refused whole (the uploader's refusal, the preview's)."""
    from .events import Issue  # here: events takes its ColumnMap from this module

    return Issue(code="unknown_mapping", message=(
        f"There is no saved mapping named “{name}”: save it first (PUT /mappings/{name}), or name another "
        "(GET /mappings lists them). Nothing was imported."))


Saved = dict  # a saved mapping as the API answers it: name, version, columns, saved_by, saved_at


def _iso(moment: datetime | None) -> str | None:
    # One form for a save's answer and a later read: SQLite hands the time back without its zone.
    return None if moment is None else as_utc(moment).isoformat()


def _saved(row) -> Saved:
    return Saved(name=row.name, version=row.version, columns=row.columns, saved_by=row.saved_by,
                 saved_at=_iso(row.saved_at))


async def save(conn: AsyncConnection, name: str, columns: dict[str, str | None], saved_by: str) -> Saved | None:
    """Saves a new version of `name` (the first is 1); None when MAPPINGS_MAX names exist and this is a new one.
    Run it in a write transaction: the version is read and written in the same one."""
    latest = await conn.scalar(select(func.max(column_mappings.c.version)).where(column_mappings.c.name == name))
    if latest is None and await conn.scalar(select(func.count(func.distinct(column_mappings.c.name)))) >= MAPPINGS_MAX:
        return None
    version = (latest or 0) + 1
    now = datetime.now(UTC)
    await conn.execute(column_mappings.insert().values(name=name, version=version, columns=columns,
                                                       saved_by=saved_by[:200], saved_at=now))
    await conn.execute(delete(column_mappings).where(column_mappings.c.name == name,
                                                     column_mappings.c.version <= version - VERSIONS_KEPT))
    return Saved(name=name, version=version, columns=columns, saved_by=saved_by[:200], saved_at=_iso(now))


async def newest(conn: AsyncConnection, name: str) -> Saved | None:
    query = (select(column_mappings).where(column_mappings.c.name == name)
             .order_by(column_mappings.c.version.desc()).limit(1))
    row = (await conn.execute(query)).one_or_none()
    return _saved(row) if row else None


async def version_of(conn: AsyncConnection, name: str, version: int) -> Saved | None:
    """One version of a saved mapping (None when it was deleted or is older than the versions kept)."""
    query = select(column_mappings).where(column_mappings.c.name == name, column_mappings.c.version == version)
    row = (await conn.execute(query)).one_or_none()
    return _saved(row) if row else None


async def listing(conn: AsyncConnection) -> list[Saved]:
    """The newest version of every name, by name."""
    latest = (select(column_mappings.c.name, func.max(column_mappings.c.version).label("version"))
              .group_by(column_mappings.c.name).subquery())
    query = (select(column_mappings)
             .join(latest, (column_mappings.c.name == latest.c.name) & (column_mappings.c.version == latest.c.version))
             .order_by(column_mappings.c.name))
    return [_saved(row) for row in await conn.execute(query)]


async def remove(conn: AsyncConnection, name: str) -> bool:
    result = await conn.execute(delete(column_mappings).where(column_mappings.c.name == name))
    return result.rowcount > 0
