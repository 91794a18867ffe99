"""The pipeline's consumers: each batch a stage consumes ends with a young collection (clients_import/collector.py),
so the cycles a batch leaves never wait for the next threshold, however high a service sets it."""

import asyncio
import tempfile
import uuid
from pathlib import Path

from clients_import import pipeline as pipeline_module
from clients_import.pipeline import Pipeline
from shared import topics
from shared.events import ImportRequest
from shared.settings import Settings


async def test_every_batch_a_stage_consumes_ends_with_a_young_collection(monkeypatch):
    ended: list[str] = []
    monkeypatch.setattr(pipeline_module, "after_batch", lambda: ended.append("batch"))
    path = Path(tempfile.mkdtemp()) / "batches.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", api_token="t", _env_file=None)
    request = ImportRequest(requested_by="partner", file_name="two.csv",
                            content=f"firstName,email\nAnn,ann.{uuid.uuid4().hex[:8]}@example.com\n")
    async with Pipeline(settings, in_memory=True) as pipeline:
        await pipeline.broker.publish(request.model_dump_json().encode(), topics.REQUESTS, key=b"partner")
        async with asyncio.timeout(30):
            while not pipeline.seen[topics.NOTIFICATIONS]:
                await asyncio.sleep(0.01)
    await pipeline.engine.dispose()
    # The request, its chunk, its accepted rows and their results: one batch each, at least.
    assert len(ended) >= 4
