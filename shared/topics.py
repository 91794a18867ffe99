"""The public topics. Partners and operators read and write these names: keep them stable."""

import zlib

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


def partition_for(email: str, partitions: int) -> int:
    """The partition of clients.import.rows.accepted every record about one email goes to (its rows, and
    the undo of them), so one writer applies them in the order they came."""
    return zlib.crc32(email.encode()) % partitions
