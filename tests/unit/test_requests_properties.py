"""The uploader's front door over arbitrary bytes: every record ends processed or dead-lettered, with an
answer for its requester where it says enough, and nothing ever raises out of the runner."""

import asyncio
import base64
import json

from aiokafka import ConsumerRecord
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.uploader.app import STAGE, UploaderPorts
from shared import topics
from shared.events import JobRefused
from shared.stage import RetryPolicy

from .stage_fakes import run_stage
from .uploader_fakes import memory_ports

FAST = RetryPolicy(attempts=2, first_backoff_s=0.0, max_backoff_s=0.0, attempt_timeout_s=5)


def _ports() -> UploaderPorts:
    return memory_ports()


def _run(values: list[bytes]) -> tuple[list, list]:
    records = [ConsumerRecord(topics.REQUESTS, 0, i, 0, 0, None, v, None, 0, len(v), []) for i, v in enumerate(values)]
    published, dead, runner = asyncio.run(run_stage(STAGE, _ports(), records, FAST))
    assert runner.tally.processed + runner.tally.dead_lettered == len(values)
    return published, dead


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
request_like = st.fixed_dictionaries(
    {},
    optional={
        "file_name": st.text(max_size=300), "requested_by": st.text(max_size=300),
        "idempotency_key": st.text(max_size=300) | st.integers(), "job_id": st.text(max_size=80),
        "content": st.text(max_size=400), "content_base64": st.binary(max_size=300).map(lambda b: base64.b64encode(b).decode()),
        "options": st.dictionaries(st.sampled_from(["mode", "dry_run", "callback_url", "column_map", "mapping", "other"]),
                                   json_values, max_size=3),
        "schema_version": st.integers(-2, 3), "source": st.text(max_size=8),
    },
).map(lambda d: json.dumps(d).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=2000) | request_like | json_values.map(lambda v: json.dumps(v).encode()),
                min_size=1, max_size=6))
def test_every_record_on_the_requests_topic_ends_processed_or_dead_lettered(values):
    published, dead = _run(values)
    # A processed request publishes its job event (accepted, refused or repeated) first; a dead letter
    # may be answered with a refusal. Nothing on the topic is answered under a job id it named itself.
    for p in published:
        assert p.topic in (topics.JOBS, topics.CHUNKS)
        if isinstance(p.event, JobRefused):
            assert p.event.reason.code and p.event.reason.message
    assert len(dead) <= len(values)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=64 * 1024))
def test_a_valid_request_carrying_any_bytes_as_its_file_gets_an_accepted_or_refused_job(data):
    request = json.dumps({"file_name": "x.csv", "content_base64": base64.b64encode(data).decode()}).encode()
    published, dead = _run([request])
    assert dead == []
    assert published[0].topic == topics.JOBS and published[0].event.event in ("job.accepted", "job.rejected")


column_maps = st.dictionaries(st.text(max_size=12) | st.sampled_from(["Mail", "Vorname", "Name", "email"]),
                              st.none() | st.text(max_size=12) | st.sampled_from(["email", "firstName", "fullName"]),
                              max_size=5)


@settings(max_examples=150, deadline=None)
@given(column_map=column_maps, header=st.lists(st.sampled_from(["Mail", "Vorname", "Name", "email", "x", ""]),
                                              min_size=1, max_size=4))
def test_a_request_with_any_column_map_gets_an_accepted_or_refused_job(column_map, header):
    content = ",".join(header) + "\n" + ",".join("a@b.co" for _ in header) + "\n"
    request = json.dumps({"file_name": "x.csv", "content": content, "options": {"column_map": column_map}}).encode()
    published, dead = _run([request])
    if dead:  # only a map past the contract's bounds (an empty column name) is not a request at all
        assert "" in column_map
        return
    job = published[0].event
    assert job.event in ("job.accepted", "job.rejected")
    if job.event == "job.rejected":
        assert job.reason.code in {"invalid_column_map", "missing_columns", "duplicate_column", "no_records"}
