"""What each process counts (shared.metrics) and the small server that shows it: /metrics, /healthz, /readyz."""

import asyncio
import uuid

import httpx
from aiokafka import ConsumerRecord
from pydantic import BaseModel

from clients_import.lag import lag_of
from clients_import.metrics_server import MetricsServer
from services.validator.app import ValidatorPorts, validate_chunks
from services.writer.plan import PendingRow
from services.writer.upsert import apply_rows
from shared.db import create_engine, create_tables
from shared.events import AcceptedRow, Chunk, ClientValues, ImportOptions
from shared.kafka import Publication
from shared.metrics import REGISTRY
from shared.settings import Settings
from shared.stage import Handled, RetryPolicy, Stage, StageRunner

FAST = RetryPolicy(attempts=2, first_backoff_s=0.001, max_backoff_s=0.002, attempt_timeout_s=0.5)


class Echo(BaseModel):
    n: int


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def runner_for(stage_name: str, bad: set[int]) -> StageRunner:
    async def handle(events, _ports):
        if any(e.n in bad for e in events):
            raise ValueError("cannot take it")
        return [Publication("t.out", e) for e in events]

    async def publish(_publications):
        return None

    async def dead_letter(_letters):
        return None

    async def healthy():
        return True

    stage = Stage(name=stage_name, description="", consumes=("t.in",), publishes=(),
                  decode=lambda r: Echo.model_validate_json(r.value), handle=handle, ports=lambda *_: None)
    return StageRunner(stage, None, publish, dead_letter, healthy, FAST)


def records(*values: bytes) -> list[ConsumerRecord]:
    return [ConsumerRecord("t.in", 0, i, 0, 0, None, v, None, 0, len(v), []) for i, v in enumerate(values)]


async def test_the_runner_counts_each_record_processed_or_dead_lettered_and_each_batch_by_stage():
    stage = f"test-{uuid.uuid4().hex[:8]}"
    runner = runner_for(stage, bad={3})
    # The series exist from the start, at zero, so a dashboard shows a stage before its first record.
    assert REGISTRY.get_sample_value("clients_import_records_total", {"stage": stage, "end": "processed"}) == 0
    assert REGISTRY.get_sample_value("clients_import_records_total", {"stage": stage, "end": "dead_lettered"}) == 0

    await runner.run(records(b'{"n": 1}', b'{"n": 2}', b'{"n": 3}', b"not json", b'{"n": 4}'))
    await runner.run(records(b'{"n": 5}'))

    assert value("clients_import_records_total", stage=stage, end="processed") == 4
    assert value("clients_import_records_total", stage=stage, end="dead_lettered") == 2
    assert value("clients_import_dead_letters_total", stage=stage) == 2
    assert value("clients_import_batch_records_count", stage=stage) == 2  # two batches
    assert value("clients_import_batch_records_sum", stage=stage) == 6  # of 5 and 1 records
    assert (runner.tally.processed, runner.tally.dead_lettered) == (4, 2)  # the same as the tally


async def test_the_validator_counts_its_rows_once_they_are_published():
    chunk = Chunk(job_id="j", index=0, count=1, first_row=1, lines=(2, 3, 4),
                  csv="firstName,email\nAnn,ann@x.com\n,bob@x.com\nCy,cy@x.com\n", columns={"firstName": 0, "email": 1})
    before = {o: value("clients_import_rows_total", stage="validator", outcome=o) for o in ("accepted", "rejected")}

    handled = await validate_chunks([chunk], ValidatorPorts.open(Settings(_env_file=None)))

    assert isinstance(handled, Handled) and handled.publications
    assert value("clients_import_rows_total", stage="validator", outcome="accepted") == before["accepted"]
    await handled.then()  # the runner calls it once the publications are acknowledged
    assert value("clients_import_rows_total", stage="validator", outcome="accepted") == before["accepted"] + 2
    assert value("clients_import_rows_total", stage="validator", outcome="rejected") == before["rejected"] + 1


async def test_the_writer_counts_a_row_when_its_result_is_committed_and_not_again_when_it_comes_back(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}")
    await create_tables(engine)
    job = str(uuid.uuid4())
    rows = [PendingRow(job, ImportOptions(), AcceptedRow(row=n, line=n + 1, original={},
                                                          values=ClientValues(email=f"c{n}@{job[:8]}.com", first_name="C")))
            for n in (1, 2)]
    created = ("clients_import_rows_total", {"stage": "writer", "outcome": "created"})
    transactions = ("clients_import_db_transaction_seconds_count", {"stage": "writer"})
    before = [REGISTRY.get_sample_value(*created) or 0, REGISTRY.get_sample_value(*transactions) or 0]
    try:
        await apply_rows(engine, rows)
        await apply_rows(engine, rows)  # redelivered: the recorded results come back, nothing is applied
    finally:
        await engine.dispose()

    assert REGISTRY.get_sample_value(*created) == before[0] + 2
    assert REGISTRY.get_sample_value(*transactions) == before[1] + 2


def test_lag_is_what_the_group_has_yet_to_read():
    assert lag_of(committed=7, first=0, end=10) == 3
    assert lag_of(committed=None, first=4, end=10) == 6  # nothing committed: it reads from the first offset
    assert lag_of(committed=-1, first=0, end=0) == 0
    assert lag_of(committed=2, first=5, end=9) == 4  # retention removed what it had not read
    assert lag_of(committed=10, first=0, end=10) == 0


async def _server(readiness) -> tuple[MetricsServer, str]:
    server = MetricsServer(readiness, "127.0.0.1", 0)
    port = await server.start()
    return server, f"http://127.0.0.1:{port}"


async def test_the_server_shows_the_metrics_liveness_and_readiness_with_its_reason():
    state: dict[str, str | None] = {"reason": None}

    async def readiness():
        return state["reason"]

    server, url = await _server(readiness)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            metrics = await http.get("/metrics")
            assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
            assert "# TYPE clients_import_records_total counter" in metrics.text
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/readyz")).json() == {"ready": True}

            state["reason"] = "the Kafka broker does not answer"
            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {"ready": False, "reason": "the Kafka broker does not answer"}
            assert (await http.get("/healthz")).status_code == 200

            assert (await http.get("/nowhere")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
            assert (await http.head("/metrics")).status_code == 200
            assert (await http.get("/metrics?name=x")).status_code == 200
    finally:
        await server.stop()


async def test_a_readiness_check_that_hangs_or_fails_is_a_503_within_bounds(monkeypatch):
    import clients_import.metrics_server as module

    monkeypatch.setattr(module, "READY_TIMEOUT_S", 0.2)

    async def hangs():
        await asyncio.sleep(60)

    async def fails():
        raise RuntimeError("boom")

    for readiness, reason in ((hangs, "longer than"), (fails, "RuntimeError")):
        server, url = await _server(readiness)
        try:
            async with httpx.AsyncClient(base_url=url, timeout=5) as http:
                answer = await http.get("/readyz")
            assert answer.status_code == 503 and reason in answer.json()["reason"]
        finally:
            await server.stop()


async def test_the_server_drops_garbage_and_oversized_requests_and_keeps_answering():
    async def ready():
        return None

    server, url = await _server(ready)
    try:
        for junk in (b"\x00\xff garbage\r\n\r\n", b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", b"GET /metrics"):
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            writer.write(junk)
            await writer.drain()
            if junk == b"GET /metrics":
                writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), timeout=6)
            assert answer == b"" or answer.startswith(b"HTTP/1.1 400")
            writer.close()
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            assert (await http.get("/healthz")).status_code == 200
    finally:
        await server.stop()
