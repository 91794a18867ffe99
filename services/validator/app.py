"""The validator: raw CSV chunks in, accepted and rejected rows out."""

import logging
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.events import Chunk, RowsAccepted, RowsRejected
from shared.kafka import Publication, value_of
from shared.metrics import ROWS
from shared.reading import Limits
from shared.rules import RowRules, validate_chunk
from shared.settings import Settings
from shared.stage import Handled, Output, Stage

from .chunk_shape import check_chunk_shape
from .routing import route

__all__ = ["STAGE", "ValidatorPorts", "validate_chunks"]

log = logging.getLogger("clients_import.validator")


@dataclass(frozen=True)
class ValidatorPorts:
    rules: RowRules
    partitions: int
    record_max_bytes: int
    limits: Limits
    chunk_rows: int

    @classmethod
    def open(cls, settings: Settings, _engine: AsyncEngine | None = None, _publish: object = None) -> "ValidatorPorts":
        return cls(RowRules(client_types=settings.client_types), settings.topic_partitions, settings.chunk_max_bytes,
                   Limits.of(settings), settings.chunk_rows)

    def admit(self, chunk: Chunk) -> None:
        """Refuse a chunk our uploader would never cut (chunk_shape.py): its work stays bounded."""
        check_chunk_shape(chunk, self.limits, self.chunk_rows, self.record_max_bytes)


async def validate_chunks(chunks: list[Chunk], ports: ValidatorPorts) -> Handled:
    publications: list[Publication] = []
    counts = {"accepted": 0, "rejected": 0}
    for chunk in chunks:
        accepted, rejected = validate_chunk(chunk, ports.rules)
        publications += route(chunk, accepted, rejected, ports.partitions, ports.record_max_bytes)
        counts["accepted"] += len(accepted)
        counts["rejected"] += len(rejected)
        log.info("chunk validated", extra={"step": "chunk.validated", "job_id": chunk.job_id, "chunk": chunk.index,
                                           "accepted": len(accepted), "rejected": len(rejected)})

    async def count() -> None:  # once the rows are published: a failed call that is split and run again counts once
        for outcome, n in counts.items():
            ROWS.labels("validator", outcome).inc(n)

    return Handled(publications, count)


STAGE = Stage(
    name="validator",
    description="Checks every row of a chunk against the import rules.",
    consumes=(topics.CHUNKS,),
    publishes=(
        Output(topics.ROWS_ACCEPTED, RowsAccepted, "rows.accepted",
               "Valid rows of a chunk, normalised; every row of one email on one partition."),
        Output(topics.ROWS_REJECTED, RowsRejected, "rows.rejected",
               "Rows of a chunk that broke a rule, with every error and the original values."),
    ),
    decode=value_of(Chunk.model_validate_json),
    handle=validate_chunks,
    ports=ValidatorPorts.open,
    # A bounded batch: 16 chunks (8,000 rows at 500 a chunk) is big enough to amortise a fetch and small enough
    # that a backlog of files neither holds 100,000 rows in memory at once nor waits for all of them to publish.
    max_records=16,
)
