"""The writer: accepted rows in, clients upserted by email, one result per row out."""

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import groupby

from sqlalchemy.ext.asyncio import AsyncEngine

from shared import topics
from shared.events import RowResult, RowsAccepted, RowsWritten
from shared.kafka import Publication, value_of
from shared.settings import Settings
from shared.stage import Output, Stage

from .plan import PendingRow
from .undo import purge_changes, undo_share, undone_events
from .upsert import apply_rows_and_build

__all__ = ["STAGE", "WriterPorts", "write_rows", "written_events"]

log = logging.getLogger("clients_import.writer")


_PURGE_EVERY_S = 3600.0


@dataclass(frozen=True)
class WriterPorts:
    engine: AsyncEngine
    undo_retention_days: float = 30.0

    @classmethod
    def open(cls, settings: Settings, engine: AsyncEngine, _publish: object = None) -> "WriterPorts":
        return cls(engine, settings.undo_retention_days)

    def background(self) -> list:
        return [self.run_purge()]

    async def run_purge(self) -> None:
        """Forget the values recorded for undo once they are past the retention, hourly."""
        while True:
            try:
                purged = await purge_changes(self.engine, self.undo_retention_days, datetime.now(UTC))
                if purged:
                    log.info("undo records purged", extra={"step": "undo.purged", "rows": purged})
            except Exception:  # the loop must outlive a passing database error
                log.exception("purging undo records failed", extra={"step": "undo.purged"})
            await asyncio.sleep(_PURGE_EVERY_S)


async def write_rows(batches: list[RowsAccepted], ports: WriterPorts) -> list[Publication]:
    """Rows and undo shares, in the order they came (a share may follow rows of the same emails)."""
    publications: list[Publication] = []
    for is_undo, run in groupby(batches, key=lambda b: b.undo_of is not None):
        run = list(run)
        publications += await undo_shares(run, ports) if is_undo else await upsert_rows(run, ports)
    return publications


async def undo_shares(shares: list[RowsAccepted], ports: WriterPorts) -> list[Publication]:
    publications: list[Publication] = []
    for share in shares:
        publications += undone_events(share, await undo_share(ports.engine, share))
    return publications


async def upsert_rows(batches: list[RowsAccepted], ports: WriterPorts) -> list[Publication]:
    # The database commits here, while the answers are built and encoded; offsets are committed only
    # after the publications are acknowledged.
    pending = [PendingRow(b.job_id, b.options, row) for b in batches for row in b.rows]
    publications, rows_by_job = await apply_rows_and_build(
        ports.engine, pending, lambda results: (written_events(batches, results, encoded=True), _rows_by_job(results)))
    for job_id, n in rows_by_job.items():
        log.info("rows written", extra={"step": "rows.written", "job_id": job_id, "rows": n})
    return publications


def _rows_by_job(results: list[tuple[str, RowResult]]) -> Counter:
    return Counter(job_id for job_id, _ in results)


def written_events(batches: list[RowsAccepted], results: list[tuple[str, RowResult]], encoded: bool = False) -> list[Publication]:
    """One answer per accepted record, holding the results of exactly its rows: a redelivered record
    gets the same answer, which the notifier recognises. `encoded`: each with its bytes already made."""
    by_row = {(job_id, result.row): result for job_id, result in results}
    publications = [
        Publication(
            topics.ROWS_WRITTEN,
            RowsWritten(job_id=batch.job_id, results=tuple(by_row[(batch.job_id, row.row)] for row in batch.rows)),
            key=batch.job_id,
        )
        for batch in batches
        if batch.rows
    ]
    return [p._replace(payload=p.encoded()) for p in publications] if encoded else publications


STAGE = Stage(
    name="writer",
    description="Upserts clients by email, a batch per transaction; undoes an import's share of a partition.",
    consumes=(topics.ROWS_ACCEPTED,),
    publishes=(
        Output(topics.ROWS_WRITTEN, RowsWritten, "rows.written",
               "What the writer did with each row of one accepted record: created, updated, unchanged or rejected, "
               "with the client id."),
    ),
    decode=value_of(RowsAccepted.model_validate_json),
    handle=write_rows,
    ports=WriterPorts.open,
    # A bounded transaction: 64 records (about 8,000 rows at 4 partitions and 500 rows a chunk) amortises the
    # commit and the index's flush; more saves little and holds every row of a backlog in memory at once.
    max_records=64,
)
