"""The writer of `make bench ARGS=--ceiling`: the real writer's consumer, batches, decoding and encoding,
with its answers made without the database (every row "created"). What the rest of the pipeline can
carry with the writer's database work taken out: a diagnostic of the bench, never the product, since
it writes no client. Run as `python bench/ceiling_writer.py`, with the environment `serve` reads."""

import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.writer import app as writer  # noqa: E402
from services.writer.upsert import new_ids  # noqa: E402
from shared.events import Outcome, RowResult  # noqa: E402


async def answer_without_database(batches, _ports):
    ids = new_ids(sum(len(b.rows) for b in batches))
    results = [(b.job_id, RowResult(row=r.row, line=r.line, outcome=Outcome.CREATED, email=r.values.email,
                                    client_id=next(ids), username=r.values.email.split("@")[0], errors=(), original={}))
               for b in batches for r in b.rows]
    return writer.written_events(batches, results, encoded=True)


# Before the topology is imported: it reads the writer's stage once.
writer.STAGE = dataclasses.replace(writer.STAGE, handle=answer_without_database)

from clients_import.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["serve", "writer"]))
