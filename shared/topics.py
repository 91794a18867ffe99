"""The public topics. Partners and operators read and write these names: keep them stable."""

REQUESTS = "clients.import.requests"
JOBS = "clients.import.jobs"
CHUNKS = "clients.import.chunks"
ROWS_ACCEPTED = "clients.import.rows.accepted"
ROWS_REJECTED = "clients.import.rows.rejected"
ROWS_WRITTEN = "clients.import.rows.written"
PROGRESS = "clients.import.progress"
NOTIFICATIONS = "clients.import.notifications"
DLQ = "clients.import.dlq"

ALL = (REQUESTS, JOBS, CHUNKS, ROWS_ACCEPTED, ROWS_REJECTED, ROWS_WRITTEN, PROGRESS, NOTIFICATIONS, DLQ)
