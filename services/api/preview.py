"""What an import of a file would do, before anything is imported: POST /imports/preview.

The page's mapping step asks this, and shows what it answers: the server is the authority. The file is
read by the uploader's own reader and its first rows are checked by the validator's own rules
(shared/reading.py, shared/rules.py), with the same limits, the same column map and the same saved
mapping an import of it would use; nothing is published and nothing is written.

    columns   each column of the header as written, with its first SAMPLES values, the field it is taken as
              (null: ignored) and who said so ("map": the column map or the saved mapping, which may ignore
              it; "header": its name is the field's or an alias; null: nothing, so it is ignored)
    missing   each required field no column is, with the columns that look like it
    refused   the reason an import would refuse the file whole (the uploader's code and message), or null
    needs_mapping  true when that reason is which column is which field (a column map would fix it)
    rows      the first PREVIEW_ROWS rows as they would be imported: their values by field (normalised when
              the row is accepted), and each problem with its code, field and message
    total     how many rows the file has (null when it is refused)

Bounds: the upload's (upload.py: the file at most MAX_BYTES, the form its allowance); PREVIEW_ROWS rows,
SAMPLES values a column, every value shown cut to SHOWN_CHARS characters, its control and invisible characters
(direction overrides...) shown as U+FFFD. At most API_PREVIEW_CONCURRENCY previews at once: one more is answered
503 preview_busy with Retry-After before its body is read. The reading runs off the event loop on threads of
its own (that many), so previews never hold up the API's other answers nor take the threads static files use;
the file is decoded once, and only the rows shown keep their values (the others are counted), so one preview
holds about its file's size twice in memory.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import anyio
from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import mappings
from shared.db import reading
from shared.events import AcceptedRow, Issue
from shared.fields import FIELDS, FULL_NAME, NAME_PARTS
from shared.mappings import combined_map, unknown_mapping
from shared.reading import Head, Limits, Matched, look_alikes, match_columns, prepare, read_head, read_records, show_value
from shared.rules import RowRules, check_row, find_repeats, given_values, raw_values
from shared.settings import Settings

from .errors import ApiError
from .mappings import form_column_map, form_mapping_name
from .upload import MAPPING_FIELDS, form_schema, take_upload

__all__ = ["PREVIEW_ROWS", "SAMPLES", "SHOWN_CHARS", "PATH", "preview", "add_preview_route"]

PATH = "/imports/preview"
PREVIEW_ROWS = 20  # rows of the file checked and shown
SAMPLES = 3  # values shown under each column
SHOWN_CHARS = 200  # characters of one value shown, "…" after
BUSY_RETRY_AFTER_S = 2  # what a 503 preview_busy's Retry-After says: a preview takes a second or two
# The refusals a column map fixes: the reader's, and the uploader's for a name nobody saved.
MAPPING_CODES = frozenset({"missing_columns", "duplicate_column", "invalid_column_map", "unknown_mapping"})


def preview(data: bytes | bytearray, limits: Limits, rules: RowRules, column_map: dict[str, str | None] | None = None,
            mapping: str | None = None, saved: dict | None = None) -> dict:
    """The preview of a file under a column map and a saved mapping (`saved`, as found for the name
    `mapping`; None when there is none by that name)."""
    answer = _preview(data, limits, rules, column_map, mapping, saved)
    refused = answer["refused"]
    return {**answer, "needs_mapping": bool(answer["columns"]) and refused is not None and refused["code"] in MAPPING_CODES}


def _preview(data: bytes | bytearray, limits: Limits, rules: RowRules, column_map: dict[str, str | None] | None,
             mapping: str | None, saved: dict | None) -> dict:
    columns = combined_map(saved["columns"] if saved else {}, column_map or {})
    prepared = prepare(data, limits)  # decoded once, read twice
    head = prepared if isinstance(prepared, Issue) else read_head(prepared, limits, max(SAMPLES, 1))
    answer = {"columns": [], "missing": [], "refused": None, "rows": [], "total": None, "warnings": [],
              "mapping": {"name": saved["name"], "version": saved["version"]} if saved else None,
              "rows_shown": PREVIEW_ROWS}
    if isinstance(head, Issue):
        return {**answer, "refused": _issue(head)}
    matched = _matched(head, columns)
    answer["columns"] = _columns(head, matched)
    answer["missing"] = [{"field": name, "looks_like": look_alikes(name, matched.free(head.header))} for name in matched.missing]
    if mapping is not None and saved is None:
        return {**answer, "refused": _issue(unknown_mapping(mapping))}
    # The authority: what the uploader makes of the whole file (read_file), keeping the values of the rows shown.
    # A row's repeat is of an earlier row, so the rows shown are all find_repeats needs for them.
    read = read_records(prepared.text, limits, prepared.warnings, columns, prepared.delimiter, keep=PREVIEW_ROWS)
    if isinstance(read, Issue):
        return {**answer, "refused": _issue(read)}
    repeats = find_repeats(read)
    rows = []
    for row, cells in enumerate(read.records[:PREVIEW_ROWS], start=1):
        checked = check_row(cells, list(read.header), read.columns, row=row, line=read.lines[row - 1],
                            repeat=repeats.get(row), rules=rules)
        rows.append(_row(checked, given_values(raw_values(cells, read.columns))))
    return {**answer, "rows": rows, "total": len(read.records), "warnings": [_issue(w) for w in read.warnings]}


def _matched(head: Head, columns: dict[str, str | None]) -> Matched:
    """The columns' fields under the map; when the map (or the header itself) does not fit, under the header
    alone, or none: the refusal says what does not fit, and the person maps the columns again."""
    for attempt in (columns, {}):
        matched = match_columns(list(head.header), attempt)
        if isinstance(matched, Matched):
            return matched
    return Matched(columns={}, decided=set(), unknown=[n for n in head.header if n])


def _columns(head: Head, matched: Matched) -> list[dict]:
    field_of = {index: name for name, index in matched.columns.items()}
    return [
        {"name": name, "samples": [_shown(r[i]) for r in head.records[:SAMPLES] if i < len(r)],
         "field": field_of.get(i), "by": "map" if i in matched.decided else "header" if i in field_of else None}
        for i, name in enumerate(head.header)
    ]


def _row(checked, given: dict[str, str]) -> dict:
    if isinstance(checked, AcceptedRow):
        values = {f.column: getattr(checked.values, f.key) for f in FIELDS}
    else:  # as given, where a rule stopped it: what the person fixes
        values = {f.column: given.get(f.column) or None for f in FIELDS}
    return {"row": checked.row, "line": checked.line, "accepted": isinstance(checked, AcceptedRow),
            "values": {name: _shown(v) if v is not None else None for name, v in values.items()},
            "errors": [] if isinstance(checked, AcceptedRow) else [_issue(e) for e in checked.errors]}


def _issue(issue: Issue) -> dict:
    return {"code": issue.code, "message": issue.message, "field": _field_shown(issue.field)}


def _field_shown(name: str | None) -> str | None:
    """A whole-name column's problem is shown on the first name, where its value goes first."""
    return NAME_PARTS[0] if name == FULL_NAME else name


def _shown(value: str) -> str:
    """A value as the page shows it: cut short, and printable (a direction override or another control or
    invisible character would change how the page reads, as in a message: shared/reading.py's show_value)."""
    return show_value(value, SHOWN_CHARS)


_BODY = form_schema(**MAPPING_FIELDS)


def add_preview_route(app: FastAPI, engine: AsyncEngine, caller, settings: Settings) -> None:
    """The route, behind the same caller check as every other route."""
    limits, rules = Limits.of(settings), RowRules(client_types=settings.client_types)
    reader = reading(engine) if engine is not None else None  # the read-only transactions of shared/db.py
    Caller = Annotated[str, Depends(caller)]

    async def saved_mapping(name: str) -> dict | None:
        async with reader.connect() as conn:
            return await mappings.newest(conn, name)

    slots = _Slots(settings.api_preview_concurrency)
    readers = anyio.CapacityLimiter(settings.api_preview_concurrency)  # the previews' own threads

    @app.post(PATH, tags=["imports"], description=__doc__.split("\n\n", 1)[1], openapi_extra={"requestBody": _BODY})
    async def preview_import(request: Request, _: Caller) -> dict:
        """Multipart like POST /imports: `file`, and optional `column_map` and `mapping`; other fields are not read."""
        with slots.taken():  # before the body is read: a refused preview costs nothing
            upload = await take_upload(request, settings.max_bytes)
            column_map = form_column_map(upload.fields)
            name = form_mapping_name(upload.fields)
            saved = await saved_mapping(name) if name else None
            # upload.data as it is, not a copy: the reading never changes it
            return await anyio.to_thread.run_sync(preview, upload.data, limits, rules, column_map, name, saved,
                                                  limiter=readers)


class _Slots:
    """How many previews are under way (their bodies being read, or their files); one more is refused."""

    def __init__(self, size: int) -> None:
        self.size, self.used = size, 0

    @contextmanager
    def taken(self) -> Iterator[None]:
        if self.used >= self.size:
            raise ApiError(503, "preview_busy", f"{self.size} previews are being made already: try again in a moment.",
                           headers={"Retry-After": str(BUSY_RETRY_AFTER_S)})
        self.used += 1
        try:
            yield
        finally:
            self.used -= 1
