"""The pipeline's consumers: each batch a stage consumes is handled as one batch for the collector
(clients_import/collector.py), so no collection walks it while it lives and its cycles are collected when it ends."""

import asyncio
import contextlib
import tempfile
import uuid
from pathlib import Path

from clients_import import collector
from clients_import.pipeline import Pipeline
from shared import topics
from shared.events import ImportRequest
from shared.settings import Settings


async def test_every_batch_a_stage_consumes_is_handled_inside_a_collector_batch(monkeypatch):
    handled: list[str] = []
    in_hand = [0]

    @contextlib.contextmanager
    def batch():
        handled.append("began")
        in_hand[0] += 1
        try:
            yield
        finally:
            in_hand[0] -= 1
            handled.append("ended")

    monkeypatch.setattr(collector, "batch", batch)
    path = Path(tempfile.mkdtemp()) / "batches.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", api_token="t", _env_file=None)
    request = ImportRequest(requested_by="partner", file_name="two.csv",
                            content=f"firstName,email\nAnn,ann.{uuid.uuid4().hex[:8]}@example.com\n")
    async with Pipeline(settings, in_memory=True) as pipeline:
        for name, runner in pipeline.runners.items():

            async def run(records, _real=runner.run, _name=name):
                handled.append(f"run {_name}" if in_hand[0] else f"run {_name} outside a batch")
                await _real(records)

            runner.run = run
        await pipeline.broker.publish(request.model_dump_json().encode(), topics.REQUESTS, key=b"partner")
        async with asyncio.timeout(30):
            while not pipeline.seen[topics.NOTIFICATIONS]:
                await asyncio.sleep(0.01)
    await pipeline.engine.dispose()
    runs = [step for step in handled if step.startswith("run")]
    # The request, its chunk, its accepted rows and their results: one batch each, at least, all inside.
    assert {"run uploader", "run validator", "run writer", "run notifier"} <= set(runs)
    assert not [step for step in runs if step.endswith("outside a batch")]
    assert handled.count("began") == handled.count("ended") == len(runs)
