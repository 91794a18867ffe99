"""Poison records: hostile input on every topic a stage consumes, on a real broker, cannot stop the pipeline.

For each consumed topic, a catalogue of hostile records goes onto the partition a valid import will
use, ahead of it. The valid import must still complete within seconds; every hostile record must be
accounted for, in the DLQ (by its topic, partition and offset) or as a rejected job; the stages stay up.
"""

import asyncio
import base64
import json
import time
import uuid

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner

from clients_import.topology import STAGES
from services.validator.routing import partition_for
from shared import jobs, topics
from shared.events import (
    AcceptedRow,
    Chunk,
    ClientValues,
    ImportRequest,
    JobAccepted,
    JobStatus,
    RowsAccepted,
    Source,
)

from .conftest import clients_of, unique_domain
from .kafka_tools import produce_raw, read_topic, wait_until_drained

CONSUMED = sorted({topic for stage in STAGES for topic in stage.consumes})


def junk(settings) -> dict[str, bytes | None]:
    """Records no stage can read, whatever the topic."""
    near_limit = settings.request_max_bytes - 4096
    return {
        "deep nesting (1,000 levels)": b"[" * 1000,
        "deep nesting (100,000 levels)": b'{"a":' * 100_000,
        "empty value": b"",
        "tombstone": None,
        "not UTF-8": b"\xff\xfe\x00\x81{garbage",
        "lone surrogate": b'{"job_id": "\\ud800", "file_name": "\\udfff"}',
        "repeated keys": b'{"schema_version": 1, "job_id": "a", "job_id": {"x": 1}}',
        "wrong types": b'{"schema_version": 1, "job_id": 42, "rows": "many", "csv": [], "index": "zero"}',
        "huge numbers": b'{"schema_version": 1e999999, "total": ' + b"9" * 5000 + b"}",
        "JSON of the wrong kind": b'[1, 2, 3]',
        "just under the topic's size limit": b"{" + b"x" * near_limit,
    }


# Headers only a producer writing raw bytes sends (librdkafka, `kcat -H`); the value is junk, dead-lettered
# when the record is read at all. Before, a null or non-UTF-8 value lost the whole batch it came in, and a
# name that is not UTF-8 stopped the partition for good.
HOSTILE_HEADERS = {
    "a header whose value is null": [b"trace"],
    "a header whose value is not UTF-8": [b"trace=\xff\xfe"],
    "a header whose name is not UTF-8": [b"\xff\xfe=x"],
}


def hostile_requests(domain: str) -> dict[str, ImportRequest]:
    """Requests that parse, carrying files and fields meant to hurt."""
    def file(name: str, data: bytes, **fields) -> ImportRequest:
        return ImportRequest(requested_by="mallory", file_name=name, idempotency_key=f"{name}-{domain}",
                             content_base64=base64.b64encode(data).decode(), **fields)

    wide = ",".join(["firstName", "email", *(f"x{i}" + "n" * 1000 for i in range(150))])
    return {
        "one-character rows": file("tiny-rows.csv", b"firstName,email\n" + b"a\n" * 5_000_000),
        "150 columns of 1,000-character names": file("wide.csv", f"{wide}\nAnn,ann@{domain}\n".encode()),
        "thousands of columns": file("columns.csv", (",".join(f"c{i}" for i in range(5000)) + "\n1\n").encode()),
        "control characters": file("control.csv", b"firstName,email\n" + (b"\x01" * 60 + b",\x02\n") * 150_000),
        "a header of delimiters": file("delimiters.csv", b"," * 10_000_000),
        "someone else's job id": file("forged.csv", f"firstName,email\nEve,eve@{domain}\n".encode(),
                                      job_id=str(uuid.uuid4())),
    }


def hostile_events(domain: str) -> dict[str, list[tuple[str, bytes]]]:
    """Events that parse but lie: for the stages behind the uploader."""
    job_id = f"poison-{uuid.uuid4()}"
    chunk = Chunk(job_id=job_id, index=0, count=1, first_row=1, lines=(), csv="firstName,email\nAnn,ann@x.com\n",
                  columns={"firstName": 0, "email": 9})  # no line numbers, a column past the end
    # Values no client may hold: built by hand, since our own models refuse to make them.
    row = AcceptedRow(row=1, line=2, values=ClientValues(email=f"u@{domain}", first_name="x"), original={})
    accepted = RowsAccepted(job_id=job_id, chunk=0, rows=(row,)).model_dump(mode="json")
    accepted["rows"][0]["values"].update(email=f"{'u' * 300}@{domain}", first_name="x" * 5000, username="-" * 500)
    job = JobAccepted(job_id=job_id, file_name="x.csv", source=Source.TOPIC, requested_by="mallory", options={},
                      total=-5, chunks=-1)
    wide = chunk.model_copy(update={"csv": "," * 100_000 + "\n" + "a,u@ex.co\n" * 150, "lines": tuple(range(2, 152)),
                                    "columns": {"firstName": 0, "email": 1}})
    return {
        "a chunk whose lines and columns do not match its rows": [(topics.CHUNKS, chunk.model_dump_json().encode())],
        "a chunk naming 100,000 columns": [(topics.CHUNKS, wide.model_dump_json().encode())],
        "rows with values no client may hold": [(topics.ROWS_ACCEPTED, json.dumps(accepted).encode())],
        "a job with a negative total": [(topics.JOBS, job.model_dump_json().encode())],
    }


async def test_hostile_records_on_every_topic_cannot_stop_a_valid_import_behind_them(partner, settings, engine):
    d = unique_domain()
    valid = partner.request(f"firstName,email\nVal,val@{d}\n")
    partitions = list(range(settings.topic_partitions))
    job_partition = DefaultPartitioner()(valid.job_id.encode(), partitions, partitions)
    row_partition = partition_for(f"val@{d}", settings.topic_partitions)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                max_request_size=settings.request_max_bytes)
    await producer.start()
    sent: dict[tuple[str, int, int], str] = {}
    refused_jobs: dict[str, str] = {}
    try:
        for topic in CONSUMED:
            partition = row_partition if topic == topics.ROWS_ACCEPTED else job_partition
            for name, value in junk(settings).items():
                meta = await producer.send_and_wait(topic, value, key=b"poison", partition=partition)
                sent[(topic, meta.partition, meta.offset)] = name
            for name, headers in HOSTILE_HEADERS.items():
                key = f"poison-{uuid.uuid4().hex}".encode()
                offset = await asyncio.to_thread(produce_raw, settings, topic, partition, key, b"junk", headers)
                sent[(topic, partition, offset)] = name
        for name, records in hostile_events(d).items():
            for topic, value in records:
                partition = row_partition if topic == topics.ROWS_ACCEPTED else job_partition
                meta = await producer.send_and_wait(topic, value, key=b"poison", partition=partition)
                sent[(topic, meta.partition, meta.offset)] = name
        for name, request in hostile_requests(d).items():
            meta = await producer.send_and_wait(topics.REQUESTS, request.model_dump_json().encode(),
                                                key=b"poison", partition=job_partition)
            origin = f"{topics.REQUESTS}/{meta.partition}/{meta.offset}"
            refused_jobs[jobs.job_id_for(request, origin, settings.signing_key) or jobs.origin_job_id(origin)] = name
        started = time.monotonic()
        await producer.send_and_wait(topics.REQUESTS, valid.model_dump_json().encode(), key=valid.job_id.encode(),
                                     partition=job_partition)
    finally:
        await producer.stop()

    note = (await partner.client.wait([valid.job_id], timeout=90))[valid.job_id]
    waited = time.monotonic() - started
    assert (note.status, note.created) == (JobStatus.COMPLETED, 1)
    assert list(await clients_of(engine, d)) == [f"val@{d}"]
    assert waited < 60, f"the valid import waited {waited:.1f} s behind the poison"

    # Every hostile request is a rejected job, with a reason the requester can read.
    notes = await partner.client.wait(list(refused_jobs), timeout=60)
    for job_id, name in refused_jobs.items():
        assert notes[job_id].status is JobStatus.REJECTED, name
        assert notes[job_id].reason.code in {"too_many_records", "header_too_long", "too_many_columns",
                                             "record_too_long", "job_id_not_allowed", "empty_file"}, (name, notes[job_id].reason)

    # Every record no stage could process is in the DLQ, once, with where it came from and why.
    await wait_until_drained(settings, timeout=60)
    dead = {}
    for record in await read_topic(settings, topics.DLQ, timeout=20):
        headers = {k: v.decode() for k, v in record.headers}
        where = (headers["dlq.original.topic"], int(headers["dlq.original.partition"]), int(headers["dlq.original.offset"]))
        if where in sent:
            assert where not in dead, f"{sent[where]} was dead-lettered twice"
            dead[where] = headers
    missing = {sent[where] + " on " + where[0] for where in sent.keys() - dead.keys()
               if sent[where] != "a job with a negative total"}
    assert not missing, f"not accounted for: {sorted(missing)}"
    assert all(h["dlq.reason"] and h["dlq.stage"] in {s.name for s in STAGES} for h in dead.values())
    big = [h for where, h in dead.items() if sent[where] == "just under the topic's size limit"]
    assert big and all(h["dlq.excerpt"] == "true" and len(h["dlq.original.sha256"]) == 64 for h in big)

    # The stages are still up: another import goes through at once.
    again = await partner.run(f"firstName,email\nAfter,after@{d}\n", timeout=30)
    assert again.created == 1
    print(f"\npoison suite: {len(sent)} hostile records and {len(refused_jobs)} hostile requests; "
          f"valid import done {waited:.1f} s after it was sent; {len(dead)} dead letters")


async def test_a_job_with_a_nonsense_total_ends_without_stopping_anything(partner, settings):
    """The negative total above is schema-valid: the notifier takes it and the job ends at its deadline."""
    job_id = f"poison-{uuid.uuid4()}"
    job = JobAccepted(job_id=job_id, file_name="x.csv", source=Source.TOPIC, requested_by="mallory", options={},
                      total=-5, chunks=-1)
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.JOBS, job.model_dump_json().encode(), key=job_id.encode())
    finally:
        await producer.stop()
    note = (await partner.client.wait([job_id], timeout=settings.job_deadline_s + 20))[job_id]
    assert note.status in {JobStatus.FAILED, JobStatus.COMPLETED}
    json.dumps(note.model_dump(mode="json"))
