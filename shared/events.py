"""The events on the public topics: one frozen model per event, JSON on the wire.

Every event carries `schema_version`. A change that would break a reader gets a new version;
fields are only ever added with defaults.
"""

import base64
import binascii
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .callbacks import check_form
from .fields import BY_COLUMN, USERNAME_MAX, USERNAME_MIN
from .mappings import ColumnMap, MappingName


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    schema_version: Literal[1] = 1


class Mode(StrEnum):
    UPSERT = "upsert"
    CREATE_ONLY = "create_only"
    UPDATE_ONLY = "update_only"

    @property
    def label(self) -> str:
        """What the mode does to a client that already exists, in the page's words."""
        return _MODE_LABELS[self]


_MODE_LABELS = {
    Mode.UPSERT: "Update it, and create the new ones",
    Mode.CREATE_ONLY: "Leave it as it is; create new clients only",
    Mode.UPDATE_ONLY: "Update it; create no new clients",
}


class Source(StrEnum):
    API = "api"
    CLI = "cli"
    TOPIC = "topic"


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    REJECTED = "rejected"
    # An undo's rows (shared/undo.py): what became of each row of the import it takes back.
    DELETED = "deleted"
    RESTORED = "restored"
    CONFLICT = "conflict"

    @property
    def count(self) -> str:
        """The count of a job (JobCounts, a job document, a notification) this outcome adds to."""
        return "conflicts" if self is Outcome.CONFLICT else self.value


IMPORT_OUTCOMES = (Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED, Outcome.REJECTED)  # an import's rows
UNDO_OUTCOMES = (Outcome.DELETED, Outcome.RESTORED, Outcome.CONFLICT, Outcome.UNCHANGED)  # an undo's rows


class JobKind(StrEnum):
    IMPORT = "import"
    UNDO = "undo"  # takes back an earlier import (`undo_of`)


class JobStatus(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    COMPLETED = "completed"
    COMPLETED_WITH_ERRORS = "completed_with_errors"
    VALIDATED = "validated"
    REJECTED = "rejected"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self not in (JobStatus.RECEIVED, JobStatus.PROCESSING)

    @property
    def text(self) -> "StatusText":
        return _STATUS_TEXT[self]


class StatusText(NamedTuple):
    label: str  # in tables
    heading: str  # over a job's outcome
    tone: str  # running, good, partial or bad


_STATUS_TEXT = {
    JobStatus.RECEIVED: StatusText("Received", "Importing…", "running"),
    JobStatus.PROCESSING: StatusText("Importing", "Importing…", "running"),
    JobStatus.COMPLETED: StatusText("Completed", "Import finished", "good"),
    JobStatus.COMPLETED_WITH_ERRORS: StatusText("Completed with errors", "Import finished, some rows were rejected",
                                                "partial"),
    JobStatus.VALIDATED: StatusText("Checked (dry run)", "Check finished: nothing was written", "good"),
    JobStatus.REJECTED: StatusText("Not imported", "The file was not imported", "bad"),
    JobStatus.FAILED: StatusText("Failed", "The import failed", "bad"),
}


# No control characters (C0 and C1), no invisible format characters (bidi overrides, zero-width
# marks) and no line or paragraph separators: a name that reads one way and is another is refused.
_PRINTABLE = r"^[^\p{Cc}\p{Cf}\p{Zl}\p{Zp}]*$"


class ImportOptions(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    mode: Mode = Mode.UPSERT
    dry_run: bool = False
    # Printable ASCII only, no spaces: what a URL may hold once encoded.
    callback_url: str | None = Field(default=None, max_length=2000, pattern=r"^https?://[\x21-\x7e]+$")
    # Which column of the file is which field, beyond what the reader recognises (shared/mappings.py):
    # {"Mail": "email", "Vorname": "firstName", "Notes": null}. Over a saved `mapping`, column by column.
    column_map: ColumnMap | None = None
    mapping: MappingName | None = Field(default=None, description="the name of a saved mapping (PUT /mappings/{name})")


class AppliedMapping(BaseModel):
    """How the uploader read a file's header: what a job and its notification record."""

    model_config = ConfigDict(frozen=True)
    name: str | None = Field(default=None, description="the saved mapping used, if any")
    version: int | None = Field(default=None, description="its version")
    columns: dict[str, str | None] = Field(default_factory=dict,
                                           description="the column map applied: the saved one with column_map over it")
    fields: dict[str, str] = Field(default_factory=dict,
                                   description="each field read (and fullName, when split) -> the header column it came from")


_IMPORT_ONLY_OPTIONS = ("mode", "dry_run", "column_map", "mapping")  # what an undo does not take (but their defaults)
_NO_OPTIONS = ImportOptions().model_dump()


class ImportRequest(Event):
    """clients.import.requests: start an import. Give the CSV as `content` (text) or `content_base64` (bytes).
    Or undo an earlier import: `undo_of` names its job, and the request carries no file."""

    # Names a person or a program reads back: no control characters (a NUL, say, no database takes).
    idempotency_key: str | None = Field(default=None, max_length=200, pattern=_PRINTABLE)
    requested_by: str = Field(default="unknown", max_length=200, pattern=_PRINTABLE)
    source: Source = Source.TOPIC
    file_name: str = Field(default="(undo)", min_length=1, max_length=255, pattern=_PRINTABLE,
                           description="required for an import; an undo takes the undone import's")
    content: str | None = None
    content_base64: str | None = None
    options: ImportOptions = ImportOptions()
    job_id: str | None = Field(
        default=None, max_length=64, description="set by our own API and CLI, with job_signature; partners leave it out"
    )
    job_signature: str | None = Field(default=None, max_length=128, description="proves our API or CLI named job_id")
    retry_of: str | None = Field(default=None, max_length=64, pattern=_PRINTABLE, description=(
        "a retry: the id of the import whose rejected rows this file corrects (its `row` column names them); "
        "imported with that import's mode and mapping (shared/retries.py)"))
    undo_of: str | None = Field(default=None, min_length=1, max_length=64, pattern=_PRINTABLE,
                                description="undo this import (its job id) instead of importing a file")

    @model_validator(mode="after")
    def _one_content(self) -> "ImportRequest":
        if self.undo_of is not None:
            if self.retry_of is not None:
                raise ValueError("a request is an undo (undo_of) or a retry (retry_of), not both")
            if self.content is not None or self.content_base64 is not None:
                raise ValueError("an undo (undo_of) carries no file: leave content and content_base64 out")
            if given := [name for name in _IMPORT_ONLY_OPTIONS if getattr(self.options, name) != _NO_OPTIONS[name]]:
                # An undo takes back what the import wrote, always for real: a dry run of it would write.
                raise ValueError(f"an undo (undo_of) takes no options but callback_url: leave out {', '.join(given)}")
            return self
        if "file_name" not in self.model_fields_set:
            raise ValueError("file_name is required for an import")
        if (self.content is None) == (self.content_base64 is None):
            raise ValueError("give exactly one of content and content_base64")
        return self

    @model_validator(mode="after")
    def _callback_form(self) -> "ImportRequest":
        # What a callback URL is anywhere (https or http, a host, no credentials); which destinations this
        # deployment calls is checked where the request is taken (shared/callbacks.py). The job events that
        # carry the options after it stay as lenient as before: an event already on a topic still reads.
        if self.options.callback_url is not None:
            check_form(self.options.callback_url)
        return self

    def file_bytes(self) -> bytes:
        if self.content is not None:
            return self.content.encode("utf-8")
        try:
            return base64.b64decode(self.content_base64 or "", validate=True)
        except binascii.Error as error:
            raise ValueError(f"content_base64 is not base64: {error}") from error


class Issue(BaseModel):
    """A reason: stable `code` for programs, `message` for people."""

    model_config = ConfigDict(frozen=True)
    code: str
    message: str
    field: str | None = None


class JobAccepted(Event):
    """clients.import.jobs: the file was read and cut into chunks; `total` rows are on their way."""

    event: Literal["job.accepted"] = "job.accepted"
    job_id: str
    file_name: str
    source: Source
    requested_by: str
    options: ImportOptions
    total: int
    chunks: int
    warnings: tuple[Issue, ...] = ()
    idempotency_key: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    mapping: AppliedMapping | None = None
    retry_of: str | None = Field(default=None, description="the import this one retries rows of")
    kind: JobKind = JobKind.IMPORT
    undo_of: str | None = Field(default=None, description="for an undo: the import it takes back")


class JobRefused(Event):
    """clients.import.jobs: the file was rejected whole; nothing of it will be written."""

    event: Literal["job.rejected"] = "job.rejected"
    job_id: str
    file_name: str
    source: Source
    requested_by: str
    options: ImportOptions = ImportOptions()
    reason: Issue
    warnings: tuple[Issue, ...] = ()
    idempotency_key: str | None = None
    received_at: datetime = Field(default_factory=utcnow)
    mapping: AppliedMapping | None = Field(default=None, description="the saved mapping named, when one was found")
    retry_of: str | None = Field(default=None, description="the import this one retries rows of")
    kind: JobKind = JobKind.IMPORT
    undo_of: str | None = Field(default=None, description="for an undo: the import it would have taken back")


class JobRepeated(Event):
    """clients.import.jobs: a request reused an idempotency key; it is the job already known."""

    event: Literal["job.repeated"] = "job.repeated"
    job_id: str
    # Where the repeating request came from (topic/partition/offset): a job.repeated delivered again
    # for the same request owes nothing more. Absent from older publishers: each counts as a new request.
    request: str | None = Field(default=None, max_length=300)


class JobOverdue(Event):
    """clients.import.jobs: a notifier's sweeper found the job past its deadline. The notifier that
    consumes it fails the job if it is still running: every announcement comes from that one consumer."""

    event: Literal["job.overdue"] = "job.overdue"
    job_id: str
    reason: Issue


JobEvent = Annotated[JobAccepted | JobRefused | JobRepeated | JobOverdue, Field(discriminator="event")]


class Chunk(Event):
    """clients.import.chunks: a slice of a job's file as CSV (header line first), keyed by job id."""

    job_id: str
    index: int
    count: int
    first_row: int = Field(description="record number of the first row after the header, from 1")
    lines: tuple[int, ...] = Field(description="physical line where each row starts")
    csv: str = Field(description="comma-separated, UTF-8: the header, then the rows")
    columns: dict[str, int] = Field(description="field name -> column index in the header")
    repeats: dict[int, tuple[str, int]] = Field(
        default_factory=dict, description="row -> (field, earlier row holding the same email or username)"
    )
    options: ImportOptions = ImportOptions()
    rows: tuple[int, ...] = Field(default=(), description=(
        "each row's number when they do not run on from first_row: a retry's rows keep their original numbers"))
    refused: dict[int, Issue] = Field(default_factory=dict, description=(
        "row -> why it is rejected without a check: a retry's row that is not rejected in the original"))

    def row_number(self, offset: int) -> int:
        return self.rows[offset] if self.rows else self.first_row + offset


def _limit(column: str) -> int:
    return BY_COLUMN[column].max_length


class ClientValues(BaseModel):
    """A row's normalised values. None means the cell was empty or the column absent.

    The fields' limits hold here too: a record that breaks them never reaches the database."""

    model_config = ConfigDict(frozen=True)
    email: str = Field(min_length=3, max_length=_limit("email"))
    first_name: str = Field(min_length=1, max_length=_limit("firstName"))
    middle_name: str | None = Field(default=None, max_length=_limit("middleName"))
    last_name: str | None = Field(default=None, max_length=_limit("lastName"))
    username: str | None = Field(default=None, pattern=rf"^[a-z0-9._-]{{{USERNAME_MIN},{USERNAME_MAX}}}$")
    project: str | None = Field(default=None, max_length=_limit("project"))
    desk: str | None = Field(default=None, max_length=_limit("desk"))
    type: str | None = Field(default=None, max_length=_limit("type"))


class AcceptedRow(BaseModel):
    model_config = ConfigDict(frozen=True)
    row: int
    line: int
    values: ClientValues
    original: dict[str, str]


class RowsAccepted(Event):
    """clients.import.rows.accepted: valid rows of one chunk whose emails hash to this partition."""

    job_id: str
    chunk: int
    options: ImportOptions = ImportOptions()
    rows: tuple[AcceptedRow, ...]
    # An undo's share of the work instead of rows: take back the rows of import `undo_of` whose email
    # goes to `partition` of `partitions` (shared.topics.partition_for), the partition this record is on.
    undo_of: str | None = None
    partition: int | None = None
    partitions: int | None = None


class RejectedRow(BaseModel):
    model_config = ConfigDict(frozen=True)
    row: int
    line: int
    errors: tuple[Issue, ...]
    original: dict[str, str]


class RowsRejected(Event):
    """clients.import.rows.rejected: the rows of one chunk that broke a rule, keyed by job id."""

    job_id: str
    chunk: int
    rows: tuple[RejectedRow, ...]


class RowResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    row: int
    line: int
    outcome: Outcome
    email: str
    client_id: str | None = None
    username: str | None = None
    errors: tuple[Issue, ...] = ()
    original: dict[str, str] = Field(default_factory=dict, description="kept for rejected rows only")


class RowsWritten(Event):
    """clients.import.rows.written: what the writer did with each row, keyed by job id."""

    job_id: str
    results: tuple[RowResult, ...]


class RowError(BaseModel):
    model_config = ConfigDict(frozen=True)
    row: int
    line: int
    field: str | None
    code: str
    message: str


class JobCounts(BaseModel):
    model_config = ConfigDict(frozen=True)
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    deleted: int = 0
    restored: int = 0
    conflicts: int = 0

    @property
    def processed(self) -> int:
        return (self.created + self.updated + self.unchanged + self.rejected + self.deleted + self.restored
                + self.conflicts)


class ImportProgress(Event):
    """clients.import.progress: rows processed so far, a few times a second per job, and once at the end."""

    job_id: str
    status: JobStatus
    processed: int
    total: int
    at: datetime = Field(default_factory=utcnow)


class ImportNotification(Event):
    """clients.import.notifications: the one completion notification of a job."""

    job_id: str
    file_name: str
    status: JobStatus
    total: int
    created: int
    updated: int
    unchanged: int
    rejected: int
    dry_run: bool = False
    reason: Issue | None = None
    errors: tuple[RowError, ...] = ()
    warnings: tuple[Issue, ...] = ()
    requested_by: str = ""
    source: Source = Source.TOPIC
    finished_at: datetime = Field(default_factory=utcnow)
    mapping: AppliedMapping | None = None
    retry_of: str | None = Field(default=None, description="a retry: the import whose rows it corrects (row numbers are that import's)")
    kind: JobKind = JobKind.IMPORT
    undo_of: str | None = Field(default=None, description="for an undo: the import it took back")
    deleted: int = Field(default=0, description="undo: clients the import created, deleted")
    restored: int = Field(default=0, description="undo: clients the import updated, given their earlier values back")
    conflicts: int = Field(default=0, description="undo: clients changed since, kept as they are (conflicts.csv)")

    @property
    def message(self) -> str:
        """What happened, in plain words."""
        counts = JobCounts(total=self.total, created=self.created, updated=self.updated, unchanged=self.unchanged,
                           rejected=self.rejected, deleted=self.deleted, restored=self.restored,
                           conflicts=self.conflicts)
        return outcome_sentence(self.file_name, self.status, counts, self.dry_run, self.reason, self.kind)


def outcome_sentence(file_name: str, status: JobStatus, counts: JobCounts, dry_run: bool, reason: Issue | None,
                     kind: JobKind = JobKind.IMPORT) -> str:
    """The one sentence that says how a job went: in notifications, job documents, the page and the CLI."""
    if kind is JobKind.UNDO:
        return undo_sentence(file_name, status, counts, reason)
    name = file_name or "The file"
    if status is JobStatus.REJECTED:
        return f"{name} was not imported: {reason.message if reason else 'the file was refused.'}"
    if status is JobStatus.FAILED:
        return f"{name} could not be imported: {reason.message if reason else 'the import did not finish.'}"
    if not status.is_final:
        if not counts.total:
            return f"{name} is being read."
        return f"{name} is being imported: {counts.processed:,} of {counts.total:,} rows so far."
    if dry_run or status is JobStatus.VALIDATED:
        return (f"{name} checked, nothing written: {counts.created:,} would be created, {counts.updated:,} would be "
                f"updated, {counts.unchanged:,} unchanged, {counts.rejected:,} rejected.")
    return (f"{name} imported: {counts.created:,} created, {counts.updated:,} updated, {counts.unchanged:,} unchanged, "
            f"{counts.rejected:,} rejected.")


def undo_sentence(file_name: str, status: JobStatus, counts: JobCounts, reason: Issue | None) -> str:
    name = f"the import of {file_name}" if file_name else "the import"
    if status is JobStatus.REJECTED:
        return f"Could not undo {name}: {reason.message if reason else 'the undo was refused.'}"
    if status is JobStatus.FAILED:
        return f"The undo of {name} did not finish: {reason.message if reason else 'it ran out of time.'}"
    if not status.is_final:
        return f"Undoing {name}: {counts.processed:,} of {counts.total:,} clients so far."
    kept = (f", {counts.conflicts:,} changed since and kept as {'it is' if counts.conflicts == 1 else 'they are'} "
            "(see conflicts.csv)" if counts.conflicts else "")
    clients = "client" if counts.deleted == 1 else "clients"
    return (f"Undid {name}: {counts.deleted:,} {clients} deleted, {counts.restored:,} restored, "
            f"{counts.unchanged:,} already as before{kept}.")
