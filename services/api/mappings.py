"""Saved column mappings over HTTP, and the column map of an upload form.

    PUT    /mappings/{name}   {"columns": {"Mail": "email", "Notes": null}}: saves a new version (the answer says which)
    GET    /mappings          the newest version of every saved mapping
    GET    /mappings/{name}   the newest version of one
    DELETE /mappings/{name}   all its versions

Codes: 404 unknown_mapping; 422 invalid_mapping_name (a name outside shared/mappings.py's pattern),
invalid_column_map (not a JSON object of column -> field or null, past a bound, or naming no field),
invalid_json (a body that is not JSON); 409 too_many_mappings (MAPPINGS_MAX names exist already).
Bodies are bounded by API_MAX_BODY_BYTES (64 KiB by default).
"""

import json
import re
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import mappings
from shared.db import reading
from shared.fields import TARGETS, target_of
from shared.mappings import MAP_MAX_COLUMNS, MAPPING_NAME_MAX, MAPPING_NAME_PATTERN, ColumnMap

from .errors import ApiError

__all__ = ["add_mapping_routes", "form_column_map", "form_mapping_name"]

_NAME = re.compile(MAPPING_NAME_PATTERN)
_COLUMN_MAP = TypeAdapter(ColumnMap)


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ApiError(422, "invalid_mapping_name",
                       f"A mapping's name is 1 to {MAPPING_NAME_MAX} letters, digits, '.', '_' or '-', starting with "
                       "a letter or a digit.")
    return name


def check_column_map(value: object, what: str) -> dict[str, str | None]:
    """A column map as the contract takes it (bounded, shared/mappings.py), whose fields all exist."""
    try:
        columns = _COLUMN_MAP.validate_python(value, strict=True)
    except ValidationError:
        raise ApiError(422, "invalid_column_map",
                       f"{what} must be a JSON object from column names (1 to 200 characters) to field names or null, "
                       f"with at most {MAP_MAX_COLUMNS} columns.") from None
    unknown = [f for f in columns.values() if f is not None and target_of(f) is None]
    if unknown:
        raise ApiError(422, "invalid_column_map",
                       f"“{unknown[0][:64]}” is not a client field: the fields are {', '.join(TARGETS)} (or null to "
                       "ignore a column).")
    return columns


def _json(raw: bytes | str, what: str) -> object:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        raise ApiError(422, "invalid_json", f"{what} is not valid JSON.") from None


def form_column_map(fields: dict[str, str]) -> dict[str, str | None] | None:
    """The upload form's `column_map` field: a JSON object, or nothing."""
    raw = fields.get("column_map")
    if not raw or not raw.strip():
        return None
    value = _json(raw, "The column_map field")
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_column_map", "The column_map field must be a JSON object, like {\"Mail\": \"email\"}.")
    return check_column_map(value, "The column_map field")


def form_mapping_name(fields: dict[str, str]) -> str | None:
    name = (fields.get("mapping") or "").strip()
    return check_name(name) if name else None


def add_mapping_routes(app: FastAPI, engine: AsyncEngine, caller) -> None:
    """The routes, behind the same caller check as every other route."""
    reader = reading(engine) if engine is not None else None  # the read-only transactions of shared/db.py
    Caller = Annotated[str, Depends(caller)]

    @app.put("/mappings/{name}", tags=["mappings"])
    async def save_mapping(name: str, request: Request, who: Caller) -> dict:
        """Save `{"columns": {column: field or null}}` under `name`: a new version each time."""
        check_name(name)
        body = _json(await request.body(), "The body")
        if not isinstance(body, dict) or set(body) != {"columns"}:
            raise ApiError(422, "invalid_column_map", "The body must be {\"columns\": {column: field or null}}.")
        columns = check_column_map(body["columns"], "columns")
        async with engine.begin() as conn:
            saved = await mappings.save(conn, name, columns, who)
        if saved is None:
            raise ApiError(409, "too_many_mappings",
                           f"There are {mappings.MAPPINGS_MAX} saved mappings already, the limit: delete one first.")
        return saved

    @app.get("/mappings", tags=["mappings"])
    async def list_mappings(_: Caller) -> dict:
        async with reader.connect() as conn:
            return {"items": await mappings.listing(conn)}

    @app.get("/mappings/{name}", tags=["mappings"])
    async def get_mapping(name: str, _: Caller) -> dict:
        check_name(name)
        async with reader.connect() as conn:
            saved = await mappings.newest(conn, name)
        if saved is None:
            raise ApiError(404, "unknown_mapping", f"There is no saved mapping named “{name}”.")
        return saved

    @app.delete("/mappings/{name}", status_code=204, tags=["mappings"])
    async def delete_mapping(name: str, _: Caller) -> Response:
        check_name(name)
        async with engine.begin() as conn:
            removed = await mappings.remove(conn, name)
        if not removed:
            raise ApiError(404, "unknown_mapping", f"There is no saved mapping named “{name}”.")
        return Response(status_code=204)
