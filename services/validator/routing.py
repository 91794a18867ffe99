"""Where the validator's results go: accepted rows by email to a fixed partition, rejected rows by job.

Every record is bounded in bytes: a record over the budget is split into records of fewer rows (each
row travels in exactly one record, so the notifier still counts each once).
"""

from collections import defaultdict
from collections.abc import Callable, Sequence

from shared import topics
from shared.events import AcceptedRow, Chunk, RejectedRow, RowsAccepted, RowsRejected
from shared.kafka import Publication
from shared.topics import partition_for

__all__ = ["partition_for", "route", "RECORD_MAX_BYTES"]

RECORD_MAX_BYTES = 1024 * 1024


def route(
    chunk: Chunk, accepted: list[AcceptedRow], rejected: list[RejectedRow], partitions: int,
    max_bytes: int = RECORD_MAX_BYTES,
) -> list[Publication]:
    by_partition: dict[int, list[AcceptedRow]] = defaultdict(list)
    for row in accepted:
        by_partition[partition_for(row.values.email, partitions)].append(row)
    out: list[Publication] = []
    for partition, rows in sorted(by_partition.items()):
        def accepted_event(part: Sequence[AcceptedRow]) -> RowsAccepted:
            return RowsAccepted(job_id=chunk.job_id, chunk=chunk.index, options=chunk.options, rows=tuple(part))

        out += bounded(topics.ROWS_ACCEPTED, accepted_event, rows, chunk.job_id, max_bytes, partition)
    if rejected:
        def rejected_event(part: Sequence[RejectedRow]) -> RowsRejected:
            return RowsRejected(job_id=chunk.job_id, chunk=chunk.index, rows=tuple(part))

        out += bounded(topics.ROWS_REJECTED, rejected_event, rejected, chunk.job_id, max_bytes)
    return out


def bounded(
    topic: str, make: Callable[[Sequence], object], rows: Sequence, key: str, max_bytes: int,
    partition: int | None = None,
) -> list[Publication]:
    """The rows as one record, or as halves (recursively) when one record would pass `max_bytes`.
    A lone row always goes: the reader's limits keep it far under the broker's."""
    event = make(rows)
    payload = event.model_dump_json().encode()
    if len(payload) <= max_bytes or len(rows) == 1:
        return [Publication(topic, event, key=key, partition=partition, payload=payload)]
    middle = len(rows) // 2
    return [*bounded(topic, make, rows[:middle], key, max_bytes, partition),
            *bounded(topic, make, rows[middle:], key, max_bytes, partition)]
