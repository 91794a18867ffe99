"""At-least-once delivery with an exactly-once effect, several writers, and bad messages."""

import asyncio
import json

from aiokafka import AIOKafkaProducer
from sqlalchemy import select

from clients_import.pipeline import Pipeline
from shared import topics
from shared.events import JobStatus
from shared.tables import import_jobs, job_parts, job_rows, row_outcomes

from .conftest import clients_of, unique_domain
from .kafka_tools import of_job, read_topic, wait_until_drained


async def _snapshot(engine, job_id: str, domain: str):
    async with engine.connect() as conn:
        outcomes = (await conn.execute(select(row_outcomes).where(row_outcomes.c.job_id == job_id).order_by(row_outcomes.c.row))).all()
        counted = (await conn.execute(select(job_parts).where(job_parts.c.job_id == job_id).order_by(job_parts.c.first_row))).all()
        counted += (await conn.execute(select(job_rows).where(job_rows.c.job_id == job_id).order_by(job_rows.c.row))).all()
        job = (await conn.execute(select(import_jobs).where(import_jobs.c.id == job_id))).one()
    return await clients_of(engine, domain), outcomes, counted, job


async def test_a_redelivered_batch_changes_nothing_and_counts_nothing_twice(partner, settings, engine):
    d = unique_domain()
    text = "firstName,email\n" + "".join(f"R{i},r{i}@{d}\n" for i in range(40)) + "NoEmail,\n"
    note = await partner.run(text)
    assert (note.created, note.rejected) == (40, 1)
    await wait_until_drained(settings)
    before = await _snapshot(engine, note.job_id, d)

    # Deliver every record of the job again, on every topic a service consumes.
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers, max_request_size=settings.request_max_bytes)
    await producer.start()
    redelivered = 0
    try:
        for topic in (topics.JOBS, topics.CHUNKS, topics.ROWS_ACCEPTED, topics.ROWS_REJECTED, topics.ROWS_WRITTEN):
            for record in of_job(await read_topic(settings, topic), note.job_id):
                await producer.send_and_wait(topic, record.value, key=record.key, partition=record.partition)
                redelivered += 1
    finally:
        await producer.stop()
    assert redelivered >= 5
    await wait_until_drained(settings)

    assert await _snapshot(engine, note.job_id, d) == before
    notifications = of_job(await read_topic(settings, topics.NOTIFICATIONS), note.job_id)
    assert len(notifications) == 1
    assert json.loads(notifications[0].value)["created"] == 40
    written = [json.loads(r.value) for r in of_job(await read_topic(settings, topics.ROWS_WRITTEN), note.job_id)]
    outcomes = {(res["row"], res["outcome"]) for event in written for res in event["results"]}
    assert outcomes == {(row, "created") for row in range(1, 41)}  # the re-emitted results are the recorded ones


async def test_two_writers_in_one_group_write_every_row_exactly_once(partner, settings, engine, pipeline):
    async with Pipeline(settings, services=("writer",), engine=engine) as second:
        await _until_both_writers_have_partitions(pipeline, second)
        domains = [unique_domain() for _ in range(5)]
        shared_domain = unique_domain()
        files = [
            "firstName,email\n"
            + "".join(f"W{i},w{i}@{d}\n" for i in range(400))
            + "".join(f"S{i},s{i}@{shared_domain}\n" for i in range(50))  # the same 50 emails in every file
            for d in domains
        ]
        requests = [partner.request(text) for text in files]
        await asyncio.gather(*(partner.client.submit(r) for r in requests))
        notes = await partner.client.wait([r.job_id for r in requests], timeout=120)

    assert all(notes[r.job_id].status is JobStatus.COMPLETED for r in requests)
    assert sum(notes[r.job_id].created for r in requests) == 5 * 400 + 50
    assert sum(notes[r.job_id].unchanged for r in requests) == 4 * 50
    for d in domains:
        assert len(await clients_of(engine, d)) == 400
    assert len(await clients_of(engine, shared_domain)) == 50
    async with engine.connect() as conn:
        recorded = (
            await conn.execute(select(row_outcomes.c.job_id).where(row_outcomes.c.job_id.in_([r.job_id for r in requests])))
        ).all()
    assert len(recorded) == 5 * 450


async def _until_both_writers_have_partitions(first: Pipeline, second: Pipeline, timeout: float = 30) -> None:
    def assigned(p: Pipeline) -> set:
        subs = [s for s in p.broker.subscribers if topics.ROWS_ACCEPTED in s.topic_names_for_subscribe]
        return set().union(*(s.consumer.assignment() for s in subs if s.consumer))

    for _ in range(int(timeout / 0.2)):
        mine, theirs = assigned(first), assigned(second)
        if mine and theirs and len(mine | theirs) == settings_partitions(first):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the two writers never shared the partitions of clients.import.rows.accepted")


def settings_partitions(p: Pipeline) -> int:
    return p.settings.topic_partitions


async def test_a_bad_message_goes_to_the_dead_letter_topic_and_the_next_file_is_imported(partner, settings, engine):
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers)
    await producer.start()
    try:
        await producer.send_and_wait(topics.CHUNKS, b"this is not a chunk", key=b"garbage-chunk")
        await producer.send_and_wait(topics.ROWS_ACCEPTED, b'{"job_id": 42}', key=b"garbage-rows")
    finally:
        await producer.stop()

    d = unique_domain()
    note = await partner.run(f"firstName,email\nNext,next@{d}\n")
    assert (note.status, note.created) == (JobStatus.COMPLETED, 1)

    await wait_until_drained(settings)
    dead = {r.key: dict((k, v.decode()) for k, v in r.headers) for r in await read_topic(settings, topics.DLQ)}
    assert dead[b"garbage-chunk"]["dlq.original.topic"] == topics.CHUNKS
    assert dead[b"garbage-chunk"]["dlq.stage"] == "validator"
    assert dead[b"garbage-rows"]["dlq.original.topic"] == topics.ROWS_ACCEPTED
    assert "validation error" in dead[b"garbage-rows"]["dlq.reason"].lower()
