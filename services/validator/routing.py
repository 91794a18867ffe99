"""Where the validator's results go: accepted rows by email to a fixed partition, rejected rows by job."""

import zlib
from collections import defaultdict

from shared import topics
from shared.events import AcceptedRow, Chunk, RejectedRow, RowsAccepted, RowsRejected
from shared.kafka import Publication


def partition_for(email: str, partitions: int) -> int:
    """Every row of one email goes to one partition, so one writer applies them in the order they came."""
    return zlib.crc32(email.encode()) % partitions


def route(chunk: Chunk, accepted: list[AcceptedRow], rejected: list[RejectedRow], partitions: int) -> list[Publication]:
    by_partition: dict[int, list[AcceptedRow]] = defaultdict(list)
    for row in accepted:
        by_partition[partition_for(row.values.email, partitions)].append(row)
    out = [
        Publication(
            topics.ROWS_ACCEPTED,
            RowsAccepted(job_id=chunk.job_id, chunk=chunk.index, options=chunk.options, rows=tuple(rows)),
            key=chunk.job_id,
            partition=partition,
        )
        for partition, rows in sorted(by_partition.items())
    ]
    if rejected:
        event = RowsRejected(job_id=chunk.job_id, chunk=chunk.index, rows=tuple(rejected))
        out.append(Publication(topics.ROWS_REJECTED, event, key=chunk.job_id))
    return out
