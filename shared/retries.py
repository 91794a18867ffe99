"""A retry: corrected rows of an import, imported again as an import of their own that belongs to it.

The one owner of what a retry may do (the uploader plans it, the API checks it before it starts, the
read side counts what is still rejected):
- A retry names the import it corrects (`retry_of`). A retry of a retry corrects the first import:
  every retry belongs to that one (its root).
- Its file is a CSV with a `row` column naming the original's row numbers: errors.csv, edited, is one.
  A row number that is not a row of the original, or is given twice, refuses the whole retry
  (`invalid_retry_rows`); a file without a `row` column too (`missing_row_column`).
- Only rows rejected in the original and not fixed by an earlier retry are imported again. Any other
  row of the original is answered on its own, `not_rejected`, and the rest of the retry goes on.
- Each retried row starts from its values as last tried (the original's, or those of the newest ended
  retry that rejected it again), with the retry's cells over them, column by column: a column named as
  in the original file, or by a field's name (the column the original read that field from). errors.csv's
  own columns (`row`, `line`, `errors`) are no values. The original's errors.csv and the page's grid show
  each row still rejected as last tried too.
- The rows keep the original's row and line numbers, in the pipeline, the reports and the notification;
  they are imported with the original's mode and column mapping: a retry takes no options of its own but
  where to call back (`dry_run`, another `mode`, `column_map` or `mapping` refuse it, `invalid_options`).
  The original must have ended, have written (no dry run), not be rejected whole and not be undone (or
  being undone: its rows were taken back, `not_retryable`). On the topic, a retry comes from the original's
  requester (`requested_by`), of an import sent on the topic; our API and CLI (signed) may retry any import.
- A retry that was undone (or is being undone) fixed nothing: its rows are rejected again, retryable,
  in errors.csv and counted still rejected. Undoing an import leaves the rows its retries wrote (each
  retry is an import of its own, undone on its own).
- The JSON form ({"rows": [{"row": 7, "values": {...}}]}, the API's and the CLI's) is UTF-8 JSON; its
  values are text a CSV file could hold (no control characters but tab and line breaks, the reader's rule).
  A key that is no column of the original nor a field is carried as a column of its own, so it is
  warned about (`unknown_columns`) as in a CSV.
- What a retry may fix, and what each row starts from, is decided when the uploader first takes it
  (table `job_retries`): a request delivered again is planned the same way, whatever other retries did
  meanwhile.
"""

import csv
import io
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from .db import insert_for
from .events import ImportOptions, Issue, JobStatus, Mode, Outcome
from .fields import target_of
from .tables import import_jobs, job_retries, job_rows, row_outcomes, undo_claims

__all__ = ["ROW_COLUMN", "REPORT_COLUMNS", "Original", "Basis", "refusal", "row_numbers", "answers", "merged",
           "rows_csv", "options_of", "load_original", "root_of", "fixed_rows", "last_tried", "bind", "retries_of",
           "RETRIES_SHOWN", "options_refusal", "json_rows", "Lookup"]

ROW_COLUMN = "row"
REPORT_COLUMNS = ("row", "line", "errors")  # errors.csv's own columns, after the file's
NUMBERS_SHOWN = 10  # row problems a refusal names before "and N more"
RETRIES_SHOWN = 20  # retries a job document lists, newest first


@dataclass(frozen=True)
class RejectedRow:
    line: int
    values: dict[str, str]  # the values last tried (the original's, or a retry's), by the file's column names
    errors: tuple[dict, ...] = ()
    source: str | None = None  # the retry that last tried it, if one did


@dataclass(frozen=True)
class Original:
    """What a retry needs of the import it corrects."""

    job_id: str
    file_name: str
    status: JobStatus
    requested_by: str
    dry_run: bool
    mode: Mode
    total: int
    mapping: dict | None = None
    rejected: dict[int, RejectedRow] = field(default_factory=dict)
    fixed: frozenset[int] = frozenset()  # rows an earlier retry imported (and no undo took back)
    undone_by: str | None = None  # the undo that took the import back (or is taking it back)
    source: str = "topic"  # the door it came in by: only what came on the topic may be retried unsigned

    @cached_property
    def header(self) -> list[str]:
        """The file's columns, as the rejected rows recorded them (every row has them all)."""
        first = next(iter(self.rejected.values()), None)
        return list(first.values) if first else []

    @cached_property
    def lookup(self) -> "Lookup":
        """Which of its columns a retry's column name is: built once, whatever the rows."""
        return Lookup(self.header, self.fields)

    @property
    def retryable(self) -> frozenset[int]:
        return frozenset(self.rejected) - self.fixed

    @property
    def fields(self) -> dict[str, str]:
        """Field -> the column the original read it from."""
        return dict((self.mapping or {}).get("fields") or {})


@dataclass(frozen=True)
class Basis:
    """What the uploader decided when it first took a retry: the original, and either the rows it may fix
    then or why it is refused."""

    original: Original | None
    retryable: frozenset[int]
    refusal: Issue | None = None


def refusal(original: Original | None, requested_by: str, trusted: bool) -> Issue | None:
    """Why a retry of `original` cannot start at all, or None. `trusted`: it comes from our API or CLI."""
    if original is None:
        return Issue(code="unknown_import", message="There is no import with that id to retry.")
    if original.dry_run:
        return Issue(code="not_retryable", message=(
            "That import was a dry run: nothing was written, so there is nothing to retry. Import the file itself."))
    if original.undone_by is not None:
        return Issue(code="not_retryable", message=(
            f"That import was undone (by job {original.undone_by}): its rows were taken back, so there is nothing "
            "to retry. Import the file again."))
    if original.status is JobStatus.REJECTED:
        return Issue(code="not_retryable", message=(
            "That file was rejected whole, so it has no rejected rows to retry: fix the file and import it again."))
    if not original.status.is_final:
        return Issue(code="import_running", message=(
            "That import is still running: retry its rejected rows once it has finished."))
    if not trusted and (requested_by != original.requested_by or original.source != "topic"):
        return Issue(code="retry_not_allowed", message=(
            "A retry on the topic must come from the import's own requester (requested_by)."))
    if not original.retryable:
        return Issue(code="nothing_to_retry", message=(
            "That import has no rejected rows left to retry: every row was imported, or fixed by an earlier retry."))
    return None


def row_numbers(header: Sequence[str], records: Sequence[Sequence[str]], total: int) -> list[int] | Issue:
    """The original's row number each record names (its `row` column), or why they cannot be taken."""
    column = row_column(header)
    if column is None:
        return Issue(code="missing_row_column", field=ROW_COLUMN, message=(
            "A retry's file needs a “row” column naming each row's number in the import (errors.csv has one)."))
    numbers: list[int] = []
    problems: list[str] = []
    seen: set[int] = set()
    for index, cells in enumerate(records, start=1):
        text = cells[column].strip() if column < len(cells) else ""
        number = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else None
        if number is None or not 1 <= number <= total:
            problems.append(f"record {index}: “{_show(text)}” is not a row of the import (1 to {total:,})")
        elif number in seen:
            problems.append(f"record {index}: row {number} is given twice")
        else:
            seen.add(number)
            numbers.append(number)
    if problems:
        more = f", and {len(problems) - NUMBERS_SHOWN:,} more" if len(problems) > NUMBERS_SHOWN else ""
        return Issue(code="invalid_retry_rows", field=ROW_COLUMN, message=(
            f"The retry names rows it cannot retry: {'; '.join(problems[:NUMBERS_SHOWN])}{more}. Nothing was imported."))
    return numbers


def row_column(header: Sequence[str]) -> int | None:
    """The `row` column: the last so named (errors.csv puts its own after the file's)."""
    found = [i for i, name in enumerate(header) if name.strip().lower() == ROW_COLUMN]
    return found[-1] if found else None


def answers(original: Original, numbers: Iterable[int], retryable: frozenset[int]) -> dict[int, Issue]:
    """Row -> `not_rejected`, for each named row the retry does not import again; the others go on."""
    out: dict[int, Issue] = {}
    for number in numbers:
        if number in retryable:
            continue
        why = ("it was imported by an earlier retry" if number in original.rejected
               else "it was not rejected in the import")
        out[number] = Issue(code="not_rejected", field=ROW_COLUMN,
                            message=f"Row {number} is not retried: {why}. Nothing was changed for it.")
    return out


def merged(original: Original, number: int, header: Sequence[str], cells: Sequence[str], report: bool = True) -> list[str]:
    """A retried row in the original's columns: its original values with the retry's cells over them.
    `report`: the header may hold errors.csv's own columns (a CSV's does; the JSON form's keys do not)."""
    base = original.rejected[number].values if number in original.rejected else {}
    values = dict(base)
    for name, value in given_values(original, header, cells, report).items():
        values[name] = value
    return [values.get(c, "") for c in original.header]


def given_values(original: Original, header: Sequence[str], cells: Sequence[str], report: bool = True) -> dict[str, str]:
    """The retry's cells by the original's column each one is for; columns naming nothing are left out."""
    lookup = original.lookup
    skip = lookup.report_columns(header) if report else set()
    out: dict[str, str] = {}
    for index, name in enumerate(header):
        if index in skip:
            continue
        column = lookup.column(name)
        if column is not None:
            out[column] = cells[index] if index < len(cells) else ""
    return out


class Lookup:
    """The original's columns by a retry's column name: the same name (ignoring case and surrounding spaces),
    or the column the original read a field from, for a field's name or key. Each name is resolved once
    (a JSON retry names the same keys on every row)."""

    def __init__(self, columns: Sequence[str], fields: Mapping[str, str]) -> None:
        self.exact = set(columns)
        self.lowered = {c.lower(): c for c in columns}
        self.fields = dict(fields)
        self.known: dict[str, str | None] = {}

    def column(self, name: str) -> str | None:
        if name not in self.known:
            self.known[name] = self._resolve(name)
        return self.known[name]

    def _resolve(self, name: str) -> str | None:
        clean = name.strip()
        if clean in self.exact:
            return clean
        if clean.lower() in self.lowered:
            return self.lowered[clean.lower()]
        target = target_of(clean)
        return self.fields.get(target) if target else None

    def report_columns(self, header: Sequence[str]) -> set[int | None]:
        """The indexes of errors.csv's own columns in a retry's header (`row`, and `line` and `errors` unless
        the file had such a column: then only a second one is the report's)."""
        skip: set[int | None] = {row_column(header)}
        for name in ("line", "errors"):
            found = [i for i, h in enumerate(header) if h.strip().lower() == name]
            skip |= set(found if name not in self.lowered else found[1:])
        return skip


def column_for(name: str, columns: Sequence[str], fields: Mapping[str, str]) -> str | None:
    """The original's column a retry's column name is (see Lookup)."""
    return Lookup(columns, fields).column(name)


def unknown_columns(original: Original, header: Sequence[str]) -> list[str]:
    """The retry's columns that are neither the original's nor a field it read, nor the report's own."""
    return [name for name in header if name.strip().lower() not in REPORT_COLUMNS
            and original.lookup.column(name) is None]


def rows_csv(original: Original, rows: Sequence[tuple[int, Mapping[str, str]]], room: int | None = None) -> str:
    """Rows given as (row, {column or field: value}) as a retry's CSV: the original's columns, each row whole
    (a value not given is the original's), then the keys that are none of them (the uploader warns of them,
    as for a CSV; at most `room` of them), then `row`."""
    extra = unknown_keys(original, rows)
    extra = extra[: max(room, 0)] if room is not None else extra
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*original.header, *extra, ROW_COLUMN])
    for number, values in rows:
        header = list(values)
        writer.writerow([*merged(original, number, header, [values[h] for h in header], report=False),
                         *(values.get(name, "") for name in extra), str(number)])
    return out.getvalue()


def unknown_keys(original: Original, rows: Sequence[tuple[int, Mapping[str, str]]]) -> list[str]:
    """The JSON form's keys that are no column of the original nor a field it read."""
    lookup = original.lookup
    return list(dict.fromkeys(name for _, values in rows for name in values
                              if name.strip().lower() not in REPORT_COLUMNS and lookup.column(name) is None))


def unknown_warning(file_name: str, names: Sequence[str]) -> Issue:
    shown = ", ".join(f"“{_show(name, 60)}”" for name in names[:10])
    more = f", and {len(names) - 10:,} more" if len(names) > 10 else ""
    return Issue(code="unknown_columns", message=(
        f"These columns are not columns of {file_name} nor fields, so they were ignored: {shown}{more}."))


def options_refusal(original: Original, dry_run: bool, mode: str | None, mapped: bool) -> Issue | None:
    """A retry takes no options but where to call back: it is imported as its original was, for real.
    `mode` as given (None: not given; the original's own is no change), `mapped`: a column_map or mapping."""
    named = [name for name, given in (("dry_run", dry_run), ("mode", mode is not None and mode != original.mode.value),
                                      ("column_map or mapping", mapped)) if given]
    if not named:
        return None
    return Issue(code="invalid_options", message=(
        f"A retry takes no {', '.join(named)}: its rows are imported for real, as {original.file_name} was (mode "
        f"{original.mode.value}, its column mapping). Leave {'it' if len(named) == 1 else 'them'} out; only "
        "callback_url is a retry's own."))


_UNFIT = re.compile(r"[\x00\ud800-\udfff]")  # what no CSV text holds: a NUL (the reader's binary_content), a lone surrogate
OPTION_KEYS = ("dry_run", "mode", "column_map", "mapping")


def json_rows(raw: bytes, original: Original, limits) -> tuple[list[tuple[int, dict[str, str]]], dict] | Issue:
    """The JSON form {"rows": [{"row": 7, "values": {...}}], ...}, UTF-8, within the bounds of a file (`limits`,
    shared/reading.py Limits): [(row, values)] and the body's other keys, or why it cannot be taken."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return Issue(code="invalid_json", message=(
            f"The JSON is not UTF-8 (byte {error.start:,} is not): send it as UTF-8."))
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nested past the parser's depth
        return Issue(code="invalid_json", message="The body is not valid JSON.")
    shape = Issue(code="invalid_rows", message=(
        "The body must be {\"rows\": [{\"row\": 7, \"values\": {\"email\": \"ann@example.com\"}}, ...]}, with at "
        f"most {limits.max_records:,} rows of at most {limits.max_columns} values (names up to "
        f"{limits.max_header_chars} characters, values up to {limits.max_record_chars:,})."))
    if (not isinstance(body, dict) or not isinstance(body.get("rows"), list)
            or set(body) - {"rows", "callback_url", *OPTION_KEYS}):
        return shape
    given = body["rows"]
    if not given or len(given) > limits.max_records:
        return shape
    row_is_a_column = ROW_COLUMN in original.lookup.lowered
    rows: list[tuple[int, dict[str, str]]] = []
    for item in given:
        if not isinstance(item, dict) or set(item) != {"row", "values"}:
            return shape
        number, values = item["row"], item["values"]
        if type(number) is not int or not isinstance(values, dict) or len(values) > limits.max_columns:
            return shape
        if not all(isinstance(k, str) and isinstance(v, str) and 0 < len(k) <= limits.max_header_chars
                   and len(v) <= limits.max_record_chars for k, v in values.items()):
            return shape
        if not row_is_a_column and any(k.strip().lower() == ROW_COLUMN for k in values):
            return Issue(code="invalid_rows", message="A row's number is its `row`, not one of its values. "
                         + shape.message)
        for key, value in values.items():
            if _UNFIT.search(key) or _UNFIT.search(value):
                return Issue(code="invalid_rows", message=(
                    f"Row {number}: “{_show(key)}” holds a NUL character or an unpaired surrogate (\\ud800 to "
                    "\\udfff), which no CSV text holds. Nothing was imported."))
        rows.append((number, values))
    return rows, {k: v for k, v in body.items() if k != "rows"}


def options_of(original: Original, callback_url: str | None) -> ImportOptions:
    """A retry is imported as its original was (the column mapping comes with the original's header);
    only where to call back is its own."""
    return ImportOptions(mode=original.mode, callback_url=callback_url)


# --- the database -----------------------------------------------------------------------------------------


async def root_of(conn: AsyncConnection, job_id: str) -> str:
    """The import a retry of `job_id` belongs to: `job_id` itself, or the import it retries."""
    parent = await conn.scalar(select(import_jobs.c.retry_of).where(import_jobs.c.id == job_id))
    if parent is None:
        parent = await conn.scalar(select(job_retries.c.retry_of).where(job_retries.c.job_id == job_id))
    return parent or job_id


async def load_original(conn: AsyncConnection, job_id: str, sources: Mapping[int, str] | None = None) -> Original | None:
    """The import `job_id` (or, for a retry, the import it retries), with its rejected rows and the rows its
    retries fixed. A row a retry tried and left rejected is shown as last tried: its values and errors from
    the newest ended retry that rejected it (from `sources`, row -> job, when a plan was bound to them)."""
    root = await root_of(conn, job_id)
    job = (await conn.execute(select(import_jobs).where(import_jobs.c.id == root))).mappings().one_or_none()
    if job is None:
        return None
    query = select(job_rows.c.row, job_rows.c.line, job_rows.c.original, job_rows.c.errors).where(
        job_rows.c.job_id == root).order_by(job_rows.c.row)
    rejected = {r.row: RejectedRow(r.line, dict(r.original or {}), tuple(r.errors or ()))
                for r in await conn.execute(query)}
    fixed = await fixed_rows(conn, root)
    claimed = await conn.scalar(select(undo_claims.c.job_id).where(undo_claims.c.undo_of == root))
    tried = await last_tried(conn, root, sources)
    for number, (values, errors, source) in tried.items():
        if number in rejected and (sources is not None or number not in fixed):
            rejected[number] = RejectedRow(rejected[number].line, values, errors, source)
    return Original(
        job_id=root, file_name=job["file_name"], status=JobStatus(job["status"]), requested_by=job["requested_by"],
        dry_run=bool(job["dry_run"]), mode=Mode(job["mode"]), total=job["total"] or 0, mapping=job["mapping"],
        rejected=rejected, fixed=fixed, undone_by=job["undone_by"] or claimed, source=job["source"] or "topic",
    )


async def last_tried(conn: AsyncConnection, root: str, sources: Mapping[int, str] | None) -> dict[int, tuple]:
    """Row -> (values, errors, retry) as last tried: the given sources, else the newest ended retry that
    rejected the row for a reason of its own (not `not_rejected`)."""
    retried = select(job_retries.c.job_id, job_retries.c.taken_at).where(
        job_retries.c.retry_of == root, job_retries.c.refusal.is_(None))
    if sources is not None:
        wanted = {job for job in sources.values() if job != root}
        retried = retried.where(job_retries.c.job_id.in_(sorted(wanted)))
    else:
        ended = select(import_jobs.c.id).where(import_jobs.c.status.not_in([s.value for s in (JobStatus.RECEIVED,
                                                                                                 JobStatus.PROCESSING)]))
        retried = retried.where(job_retries.c.job_id.in_(ended))
    taken = {r.job_id: r.taken_at for r in await conn.execute(retried)}
    if not taken:
        return {}
    query = select(job_rows.c.job_id, job_rows.c.row, job_rows.c.original, job_rows.c.errors).where(
        job_rows.c.job_id.in_(sorted(taken)))
    found: dict[int, tuple] = {}
    newest: dict[int, object] = {}
    for r in await conn.execute(query):
        errors = tuple(r.errors or ())
        if sources is not None and sources.get(r.row) != r.job_id:
            continue
        if sources is None and (not errors or all(e.get("code") == "not_rejected" for e in errors)):
            continue
        if r.row not in newest or taken[r.job_id] > newest[r.row]:
            newest[r.row] = taken[r.job_id]
            found[r.row] = (dict(r.original or {}), errors, r.job_id)
    return found


async def fixed_rows(conn: AsyncConnection, original_id: str) -> frozenset[int]:
    """The original's rows a retry of it imported (created, updated or left unchanged), and no undo took back
    (an undo that ended, or one under way: it holds the retry's claim)."""
    undone = select(import_jobs.c.id).where(import_jobs.c.retry_of == original_id, import_jobs.c.undone_by.is_not(None))
    retries = select(job_retries.c.job_id).where(
        job_retries.c.retry_of == original_id, job_retries.c.refusal.is_(None),
        job_retries.c.job_id.not_in(undone), job_retries.c.job_id.not_in(select(undo_claims.c.undo_of)))
    query = select(row_outcomes.c.row).where(
        row_outcomes.c.job_id.in_(retries), row_outcomes.c.outcome != Outcome.REJECTED.value).distinct()
    return frozenset((await conn.execute(query)).scalars())


async def bind(conn: AsyncConnection, job_id: str, retry_of: str, requested_by: str, trusted: bool) -> Basis:
    """What the retry `job_id` may fix, and which values each row starts from: decided the first time it is
    taken, and the same ever after (row -> the job whose values it starts from, in `job_retries.rows`)."""
    bound = (await conn.execute(select(job_retries).where(job_retries.c.job_id == job_id))).mappings().one_or_none()
    if bound is None:
        original = await load_original(conn, retry_of)
        refused = refusal(original, requested_by, trusted)
        rows = ({str(n): original.rejected[n].source or original.job_id for n in sorted(original.retryable)}
                if original is not None and refused is None else None)
        insert = insert_for(conn.dialect.name, job_retries).on_conflict_do_nothing(index_elements=[job_retries.c.job_id])
        await conn.execute(insert.values(
            job_id=job_id, retry_of=original.job_id if original else retry_of, rows=rows,
            refusal=refused.model_dump() if refused else None, taken_at=datetime.now(UTC)))
        bound = (await conn.execute(select(job_retries).where(job_retries.c.job_id == job_id))).mappings().one()
    sources = {int(n): source for n, source in (bound["rows"] or {}).items()}
    original = await load_original(conn, bound["retry_of"], sources)
    refused = Issue(**bound["refusal"]) if bound["refusal"] else None
    return Basis(original, frozenset(sources), refused)


async def retries_of(conn: AsyncConnection, original_id: str, limit: int = RETRIES_SHOWN) -> tuple[list[dict], int]:
    """The newest retries of an import (id, status, counts, when), and how many there are."""
    count = await conn.scalar(select(func.count()).select_from(import_jobs).where(import_jobs.c.retry_of == original_id))
    query = (select(import_jobs.c.id, import_jobs.c.status, import_jobs.c.total, import_jobs.c.created,
                    import_jobs.c.updated, import_jobs.c.unchanged, import_jobs.c.rejected, import_jobs.c.received_at,
                    import_jobs.c.finished_at)
             .where(import_jobs.c.retry_of == original_id).order_by(import_jobs.c.received_at.desc()).limit(limit))
    rows = [dict(r) for r in (await conn.execute(query)).mappings()]
    return [{"job_id": r.pop("id"), **r} for r in rows], count or 0


def _show(value: str, limit: int = 40) -> str:
    shown = "".join(c if c.isprintable() else "\ufffd" for c in value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
