"""What an operator sees of a running pipeline on a real broker: /metrics moves with an import and shows the
consumer lag; /readyz fails while the broker is away, and /healthz does not."""

import asyncio
import base64
import time
import uuid

import httpx
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from clients_import.client import ImportClient
from clients_import.lag import LagSampler
from clients_import.local_kafka import LocalKafka
from clients_import.pipeline import Pipeline
from clients_import.topology import STAGES
from shared import jobs, topics
from shared.events import ImportOptions, ImportRequest, Source
from shared.metrics import REGISTRY
from shared.settings import Settings

from .conftest import unique_domain
from .kafka_tools import start_groups_at_the_end, wait_until_drained

Samples = dict[tuple[str, frozenset], float]


async def scrape(http: httpx.AsyncClient) -> Samples:
    answer = await http.get("/metrics")
    assert answer.status_code == 200
    return parse(answer.text)


def parse(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def lags(samples: Samples, prefix: str) -> dict[tuple[str, str, str], float]:
    found = {}
    for (name, labels), v in samples.items():
        labels = dict(labels)
        if name == "clients_import_consumer_lag" and labels["group"].startswith(f"{prefix}."):
            found[(labels["group"], labels["topic"], labels["partition"])] = v
    return found


def signed_request(settings: Settings, text: str) -> ImportRequest:
    job_id = str(uuid.uuid4())
    return ImportRequest(job_id=job_id, job_signature=jobs.sign(settings.signing_key, job_id), requested_by="e2e",
                         source=Source.TOPIC, file_name="metrics.csv",
                         content_base64=base64.b64encode(text.encode()).decode(), options=ImportOptions())


async def until(check, timeout: float, what: str, pause: float = 0.25):
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s")
        await asyncio.sleep(pause)


async def test_an_import_moves_the_counters_and_the_lag_of_every_group_is_shown(settings, tmp_path):
    prefix = f"metrics-{uuid.uuid4().hex[:8]}"
    own = settings.model_copy(update={"metrics_port": 0, "group_prefix": prefix,
                                      "database_url": f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}"})
    await start_groups_at_the_end(own)
    d = unique_domain()
    text = "firstName,email\n" + "".join(f"M{i},m{i}@{d}\n" for i in range(5)) + "NoEmail,\n"

    groups = {own.group(s.name): s.consumes for s in STAGES}
    before = parse(generate_latest(REGISTRY).decode())  # the process's registry, which the server will show

    async with asyncio.timeout(120), ImportClient(own) as client:
        request = signed_request(own, text)
        await client.submit(request)
        # Before any service runs, the request is the one record the uploaders' group has yet to read.
        sampler = LagSampler(own, groups)
        try:
            sampled = await sampler.sample()
        finally:
            await sampler.close()
        # (The session's own pipeline, when it runs, may already have taken it and given the other groups work.)
        assert len(sampled) == sum(len(s.consumes) for s in STAGES) * own.topic_partitions
        assert sum(lag for (group, topic, _), lag in sampled.items()
                   if (group, topic) == (own.group("uploader"), topics.REQUESTS)) == 1

        async with Pipeline(own) as pipeline:
            assert pipeline.metrics_port
            note = (await client.wait([request.job_id], timeout=60))[request.job_id]
            assert (note.total, note.created, note.rejected) == (6, 5, 1)
            await _check_the_metrics(own, pipeline, before, prefix)
    await pipeline.engine.dispose()


async def _check_the_metrics(own: Settings, pipeline: Pipeline, before: Samples, prefix: str) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pipeline.metrics_port}", timeout=10) as http:
        await wait_until_drained(own)
        after = await scrape(http)

        def moved(name: str, **labels: str) -> float:
            return sample(after, name, **labels) - sample(before, name, **labels)

        # The registry is the process's: the session's own pipeline (when it runs) may add to it, never take.
        assert moved("clients_import_rows_total", stage="validator", outcome="accepted") >= 5
        assert moved("clients_import_rows_total", stage="validator", outcome="rejected") >= 1
        assert moved("clients_import_rows_total", stage="writer", outcome="created") >= 5
        for stage in ("uploader", "validator", "writer", "notifier"):
            assert moved("clients_import_records_total", stage=stage, end="processed") >= 1, stage
            assert moved("clients_import_batch_records_count", stage=stage) >= 1, stage
        assert moved("clients_import_db_transaction_seconds_count", stage="writer") >= 1
        assert ("clients_import_dead_letters_total", frozenset({("stage", "writer")})) in after

        # One lag series per group of this process and partition it consumes; all caught up in the end.
        wanted = {(own.group(s.name), topic) for s in STAGES for topic in s.consumes}

        async def caught_up():
            shown = lags(await scrape(http), prefix)
            if {(group, topic) for group, topic, _ in shown} == wanted and not any(shown.values()):
                return shown
            return None

        shown = await until(caught_up, 30, "every group's lag shown and back to zero")
        assert len(shown) == len(wanted) * own.topic_partitions

        assert (await http.get("/readyz")).json() == {"ready": True}
        assert (await http.get("/healthz")).status_code == 200


async def test_readyz_fails_while_the_broker_is_away_and_healthz_does_not(settings, tmp_path):
    kafka = LocalKafka(max_message_bytes=settings.request_max_bytes)
    await asyncio.to_thread(kafka.start)
    pipeline = None
    try:
        own = settings.model_copy(update={
            "kafka_bootstrap_servers": kafka.bootstrap, "metrics_port": 0, "group_prefix": f"ready-{uuid.uuid4().hex[:8]}",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}"})
        async with asyncio.timeout(60):
            pipeline = await Pipeline(own, services=("validator", "writer")).start()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{pipeline.metrics_port}", timeout=15) as http:

            async def ready():
                return (await http.get("/readyz")).status_code == 200

            await until(ready, 30, "/readyz 200 with the broker up")

            await asyncio.to_thread(kafka.stop)
            started = time.monotonic()

            async def not_ready():
                answer = await http.get("/readyz")
                return answer if answer.status_code == 503 else None

            answer = await until(not_ready, 30, "/readyz 503 with the broker away")
            assert time.monotonic() - started < 30
            assert answer.json() == {"ready": False, "reason": "the Kafka broker does not answer"}
            assert answer.headers["content-type"] == "application/json"
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/metrics")).status_code == 200
    finally:
        if pipeline is not None:
            async with asyncio.timeout(90):
                await pipeline.stop()
            await pipeline.engine.dispose()
        await asyncio.to_thread(kafka.stop)
