"""The database tables, as SQLAlchemy Core. Dialect-neutral: SQLite by default, PostgreSQL for several writers."""

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

metadata = MetaData()

# NULL, not a JSON 'null', for rows with no errors: most rows, so they skip JSON encoding entirely.
_json = JSON(none_as_null=True)

# Byte-wise ordering on PostgreSQL too, so a username prefix is an index range.
_username = String(64).with_variant(String(64, collation="C"), "postgresql")

clients = Table(
    "clients",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(254), nullable=False, unique=True),
    Column("username", _username, nullable=False, unique=True),
    Column("first_name", String(100), nullable=False),
    Column("middle_name", String(100)),
    Column("last_name", String(100)),
    Column("project", String(100), nullable=False),
    Column("desk", String(100), nullable=False),
    Column("type", String(32), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
# The clients list, most recently changed first, is read straight off this index (search: shared/search.py).
Index("ix_clients_updated_at", clients.c.updated_at.desc(), clients.c.email)

# The writer's ledger: each (job, row) it has applied, written in the same transaction as the upsert,
# so a redelivered row re-emits its recorded result instead of being applied twice.
row_outcomes = Table(
    "row_outcomes",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("row", Integer, nullable=False),
    Column("line", Integer, nullable=False),
    Column("email", String(254), nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("client_id", String(36)),
    Column("username", String(64)),
    Column("errors", _json),
    Column("original", _json),
    PrimaryKeyConstraint("job_id", "row"),
)

# The writer's record of what each import changed, written in the same transaction as the change, so the
# import can be undone (services/writer/undo.py): for a created client every value it was created with
# (`before` NULL), for an updated one the fields it changed, before and after. Purged a day after
# UNDO_RETENTION_DAYS.
client_changes = Table(
    "client_changes",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("row", Integer, nullable=False),
    Column("line", Integer, nullable=False),
    Column("email", String(254), nullable=False),
    Column("client_id", String(36), nullable=False),
    Column("outcome", String(16), nullable=False),  # created or updated
    Column("before", _json),
    Column("after", JSON, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("job_id", "row"),
    Index("ix_client_changes_recorded_at", "recorded_at"),
)

# What an undo found changed since, field by field, written with the undo's own row results: the
# undo's conflicts.csv.
undo_conflicts = Table(
    "undo_conflicts",
    metadata,
    Column("job_id", String(64), nullable=False),  # the undo's
    Column("row", Integer, nullable=False),  # the undone import's row
    Column("field", String(64), nullable=False),
    Column("email", String(254), nullable=False),
    Column("client_id", String(36), nullable=False),
    Column("now", String(254)),  # what the client holds now
    Column("undo_value", String(254)),  # what undo would have written
    Column("would_delete", Boolean, nullable=False),  # undo would have deleted the client (the import created it)
    Column("code", String(32), nullable=False),
    PrimaryKeyConstraint("job_id", "row", "field"),
)

# The uploader's record of undos: an import is undone by one job at most, so two undo requests cannot
# both take it back.
undo_claims = Table(
    "undo_claims",
    metadata,
    Column("undo_of", String(64), primary_key=True),
    Column("job_id", String(64), nullable=False),
    Column("claimed_at", DateTime(timezone=True), nullable=False),
)

import_jobs = Table(
    "import_jobs",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("file_name", String(255), nullable=False),
    Column("source", String(16), nullable=False),
    Column("requested_by", String(200), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("dry_run", Boolean, nullable=False, default=False),
    Column("callback_url", String(2000)),
    Column("callback_outcome", String(500)),
    Column("idempotency_key", String(200)),
    Column("status", String(32), nullable=False),
    Column("total", Integer),
    Column("created", Integer, nullable=False, default=0),
    Column("updated", Integer, nullable=False, default=0),
    Column("unchanged", Integer, nullable=False, default=0),
    Column("rejected", Integer, nullable=False, default=0),
    Column("warnings", JSON, nullable=False, default=list),
    Column("reason", JSON),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("notified_at", DateTime(timezone=True)),
    # The column mapping the uploader applied (shared/events.py AppliedMapping); NULL before it read the file.
    Column("mapping", JSON),
    # A retry: the import whose rejected rows it corrects (shared/retries.py).
    Column("retry_of", String(64)),
    # An undo (kind "undo") names the import it takes back, and counts what it did; the import it took back
    # says by which job and when (set by the notifier when the undo ends).
    Column("kind", String(16)),  # NULL: an import (rows from before undo existed)
    Column("undo_of", String(64)),
    Column("deleted", Integer),
    Column("restored", Integer),
    Column("conflicts", Integer),
    Column("undone_by", String(64)),
    Column("undone_at", DateTime(timezone=True)),
    # What the API took the job's upload for (shared/jobs.py content_digest), before any uploader has: the same
    # Idempotency-Key with another file is refused at once, not only once the first request was taken.
    Column("content_sha256", String(64)),
    Index("ix_import_jobs_received_at", "received_at"),
    Index("ix_import_jobs_retry_of", "retry_of"),
    Index("ix_import_jobs_undo_of", "undo_of"),
)

# The notifier's ledger: each row event counted once. A record of rows is known by its job and its
# first row (a row travels in exactly one record), so a redelivered record is recognised and skipped.
job_parts = Table(
    "job_parts",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("first_row", Integer, nullable=False),
    Column("created", Integer, nullable=False),
    Column("updated", Integer, nullable=False),
    Column("unchanged", Integer, nullable=False),
    Column("rejected", Integer, nullable=False),
    Column("deleted", Integer),  # an undo's outcomes
    Column("restored", Integer),
    Column("conflict", Integer),
    PrimaryKeyConstraint("job_id", "first_row"),
)

# The rejected rows of every job, with their errors and original values, for reports.
job_rows = Table(
    "job_rows",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("row", Integer, nullable=False),
    Column("line", Integer, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("email", String(254)),
    Column("client_id", String(36)),
    Column("username", String(64)),
    Column("errors", _json),
    Column("original", _json),
    PrimaryKeyConstraint("job_id", "row"),
)

# The notifier's outbox: each job's webhook delivery, kept until it is done, so a delivery in progress
# is resumed by whichever notifier runs next, with its attempts counted.
webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("url", String(2000), nullable=False),
    Column("body", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("outcome", String(500)),
    Column("done_at", DateTime(timezone=True)),
    # Signed into every attempt: receivers refuse one seen twice. Rows written before it existed have
    # none: their job id stands in.
    Column("delivery_id", String(64)),
    Index("ix_webhook_deliveries_due", "done_at", "next_attempt_at"),
)

# The notifier's record of repeated requests: each one (known by where it came from) owes the job's
# notification once more, however many times its job.repeated is delivered.
job_repeats = Table(
    "job_repeats",
    metadata,
    Column("job_id", String(64), nullable=False),
    Column("request", String(300), nullable=False),
    Column("seen_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("job_id", "request"),
)

# The notifier's notifications under way: where the notifications topic ended just before a job's
# notification was first published. Until the job is marked notified, a notifier that runs the job's
# records again (after a crash between publishing and recording) reads the topic from here and does
# not publish a notification that is already there.
notices_under_way = Table(
    "notices_under_way",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("topic_ends", JSON, nullable=False),  # {partition: end offset} of the notifications topic
    Column("started_at", DateTime(timezone=True), nullable=False),
)

# The page's sessions: a hash of each session token (never the token), until it expires or signs out.
page_sessions = Table(
    "page_sessions",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Index("ix_page_sessions_expires_at", "expires_at"),
)

# Dead letters sent back to their topic by `clients-import dlq redrive`, so a second run skips them.
redriven_letters = Table(
    "redriven_letters",
    metadata,
    Column("dlq_partition", Integer, nullable=False),
    Column("dlq_offset", Integer, nullable=False),
    Column("redriven_at", DateTime(timezone=True), nullable=False),
    Column("to_topic", String(255), nullable=False),
    Column("to_partition", Integer, nullable=False),
    Column("to_offset", Integer, nullable=False),
    PrimaryKeyConstraint("dlq_partition", "dlq_offset"),
)

# The uploader's ledger: each job it planned, bound to the request's content, so a redelivered request
# is planned again harmlessly and a different request naming the same job (a reused idempotency key,
# a replayed signed id) is refused instead of mixing two files into one job.
job_requests = Table(
    "job_requests",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("content_sha256", String(64), nullable=False),
    Column("taken_at", DateTime(timezone=True), nullable=False),
    # Where the first request came from (topic/partition/offset): the same record delivered again
    # after the job ended is not a repeated request, and answers nothing.
    Column("origin", String(300)),
    # The version of the saved mapping the job was first planned with: a request delivered again is
    # planned with the same one, even if the mapping was saved again meanwhile.
    Column("mapping_version", Integer),
)

# The uploader's ledger of retries (shared/retries.py): each retry, the import it corrects, and what it
# decided when it first took the request (the rows it may fix then, or why it refused), so a request
# delivered again is planned the same way whatever other retries did meanwhile.
job_retries = Table(
    "job_retries",
    metadata,
    Column("job_id", String(64), primary_key=True),
    Column("retry_of", String(64), nullable=False),
    Column("rows", _json),  # {row: job whose values it starts from}: the rows it may fix (rejected, not fixed before)
    Column("refusal", _json),  # or why it was refused whole ({"code", "message"})
    Column("taken_at", DateTime(timezone=True), nullable=False),
    Index("ix_job_retries_retry_of", "retry_of"),
)

# One row the runners write when a stage fails in a way that may be the database's: a database that
# is locked, full or read-only fails this write too, and the records wait instead of being blamed.
health_probe = Table(
    "health_probe",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", DateTime(timezone=True), nullable=False),
)

# Saved column mappings (shared/mappings.py): every save of a name is a new version; the newest is the one
# used. Deleting a name deletes its versions; jobs keep the name and version they used.
column_mappings = Table(
    "column_mappings",
    metadata,
    Column("name", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("columns", JSON, nullable=False),
    Column("saved_by", String(200), nullable=False),
    Column("saved_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("name", "version"),
)
