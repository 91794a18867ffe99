"""Retrying an import's rejected rows, on the real broker and database: through the API (JSON and the edited
errors.csv) and through the topic, under the original's row numbers."""

import asyncio
import csv
import io
import json

import httpx

from shared import jobs, topics
from shared.events import ImportOptions, ImportRequest, JobStatus

from .conftest import clients_of, unique_domain
from .kafka_tools import of_job, read_topic
from .test_api import AUTH, poll, upload


def people(d: str) -> str:
    """Row 1 imports; rows 2, 3 and 4 are rejected (a bad email, no first name, a bad email)."""
    return (f"First Name,Mail,lastName\nAnn,ann@{d},Lee\nBob,bob@,Ray\n,cy@{d},Lu\nDi,di@,Ng\n")


COLUMN_MAP = json.dumps({"Mail": "email"})


async def imported(http: httpx.AsyncClient, d: str) -> dict:
    answer = await upload(http, people(d), name="people.csv", column_map=COLUMN_MAP, mode="create_only")
    assert answer.status_code == 202, answer.text
    job = await poll(http, answer.json()["status_url"])
    assert (job["status"], job["created"], job["rejected"]) == ("completed_with_errors", 1, 3)
    return job


async def test_rows_fixed_through_the_api_become_clients_under_their_original_row_numbers(api, engine, partner):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        original = await imported(http, d)
        grid = (await http.get(f"/imports/{original['job_id']}/retry", headers=AUTH)).json()
        assert [r["row"] for r in grid["rows"]] == [2, 3, 4] and grid["columns"] == ["First Name", "Mail", "lastName"]
        assert grid["rows"][0]["values"]["Mail"] == "bob@" and grid["rows"][0]["errors"][0]["column"] == "Mail"

        answer = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH, json={"rows": [
            {"row": 2, "values": {"Mail": f"bob@{d}"}},
            {"row": 3, "values": {"firstName": "Cy"}},  # a field's name: the column the original read it from
            {"row": 1, "values": {"Mail": f"ann2@{d}"}},  # imported already: answered, not retried
            {"row": 4, "values": {"Mail": "di@still"}},  # still wrong: rejected again, as tried
        ]})
        assert answer.status_code == 202, answer.text
        accepted = answer.json()
        assert accepted["retry_of"] == original["job_id"] and accepted["status_url"] == f"/imports/{accepted['job_id']}"
        assert accepted["rows"]["retried"] == [2, 3, 4]
        assert [(r["row"], r["code"]) for r in accepted["rows"]["not_rejected"]] == [(1, "not_rejected")]

        note = (await partner.client.wait([accepted["job_id"]], 60))[accepted["job_id"]]
        await asyncio.sleep(0.6)  # past the read cache's 500 ms: the original's document as it is now
        after = (await http.get(original["links"]["self"], headers=AUTH)).json()
        errors = await http.get(original["links"]["errors_csv"], headers=AUTH)
        retry_doc = (await http.get(accepted["status_url"], headers=AUTH)).json()

    assert (note.status, note.total, note.created, note.rejected, note.retry_of) == (
        JobStatus.COMPLETED_WITH_ERRORS, 4, 2, 2, original["job_id"])
    assert [(e.row, e.code) for e in note.errors] == [(1, "not_rejected"), (4, "invalid_email")]
    found = await clients_of(engine, d)
    assert sorted(found) == [f"ann@{d}", f"bob@{d}", f"cy@{d}"]
    assert (found[f"bob@{d}"]["first_name"], found[f"cy@{d}"]["first_name"], found[f"cy@{d}"]["last_name"]) == (
        "Bob", "Cy", "Lu")
    assert retry_doc["retry_of"] == original["job_id"] and retry_doc["mode"] == "create_only"
    assert after["still_rejected"] == 1 and after["rejected"] == 3
    assert [(r["job_id"], r["created"]) for r in after["retries"]] == [(accepted["job_id"], 2)]
    report = list(csv.DictReader(io.StringIO(errors.text.lstrip("\ufeff"))))
    assert [r["row"] for r in report] == ["4"], "errors.csv lists only the rows still rejected"
    assert (report[0]["Mail"], report[0]["First Name"]) == ("di@still", "Di"), "as last tried"
    assert "di@still" in report[0]["errors"]


async def test_the_edited_errors_csv_is_a_retry_and_rows_already_fixed_are_answered(api, engine, partner):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        original = await imported(http, d)
        errors = (await http.get(original["links"]["errors_csv"], headers=AUTH)).text.lstrip("\ufeff")
        edited = errors.replace("bob@", f"bob@{d}", 1).replace(f'"","cy@{d}"', f'"Cy","cy@{d}"')
        first = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH,
                                files={"file": ("people-errors.csv", edited.encode(), "text/csv")})
        assert first.status_code == 202, first.text
        note = (await partner.client.wait([first.json()["job_id"]], 60))[first.json()["job_id"]]
        # row 4 still bad; the same rows sent again: 2 and 3 were fixed by the first retry
        again = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH, json={"rows": [
            {"row": 2, "values": {"Mail": f"bob@{d}"}}]})
        unknown = await http.post("/imports/no-such-import/retry", headers=AUTH, json={"rows": [{"row": 1, "values": {}}]})
        bad_rows = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH, json={"rows": [
            {"row": 9, "values": {}}]})

    assert (note.created, note.rejected, [(e.row, e.code) for e in note.errors]) == (2, 1, [(4, "invalid_email")])
    assert sorted(await clients_of(engine, d)) == [f"ann@{d}", f"bob@{d}", f"cy@{d}"]
    assert (again.status_code, again.json()["code"]) == (409, "nothing_to_retry")
    assert "earlier retry" in again.json()["message"]
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_import")
    assert (bad_rows.status_code, bad_rows.json()["code"]) == (422, "invalid_retry_rows")


async def test_a_partner_retries_on_the_topic_and_a_request_delivered_again_changes_nothing(partner, engine, settings):
    d = unique_domain()
    original = await partner.run(people(d), "people.csv", column_map={"Mail": "email"})
    assert (original.created, original.rejected) == (1, 3)
    fixes = f"row,email,firstName\n4,di@{d},Di\n1,ann@{d},Ann\n"
    retry = ImportRequest(requested_by="e2e", file_name="fixes.csv", content=fixes, idempotency_key=f"fix-{d}",
                          retry_of=original.job_id)
    retry_id = jobs.idempotent_job_id("topic", "e2e", f"fix-{d}")

    await partner.client.submit(retry)
    note = (await partner.client.wait([retry_id], 60))[retry_id]
    await partner.client.submit(retry)  # the same request again: the same job, its notification once more
    partner.client.notifications.pop(retry_id)
    repeated = (await partner.client.wait([retry_id], 60))[retry_id]
    intruder = ImportRequest(requested_by="someone-else", file_name="fixes.csv", content=fixes,
                             idempotency_key=f"steal-{d}", retry_of=original.job_id)
    await partner.client.submit(intruder)
    intruder_id = jobs.idempotent_job_id("topic", "someone-else", f"steal-{d}")
    refused = (await partner.client.wait([intruder_id], 60))[intruder_id]

    assert (note.status, note.retry_of, note.total, note.created, note.rejected) == (
        JobStatus.COMPLETED_WITH_ERRORS, original.job_id, 2, 1, 1)
    assert [(e.row, e.code) for e in note.errors] == [(1, "not_rejected")]
    assert (repeated.created, repeated.rejected) == (1, 1)
    assert (refused.status, refused.reason.code) == (JobStatus.REJECTED, "retry_not_allowed")
    assert sorted(await clients_of(engine, d)) == [f"ann@{d}", f"di@{d}"]
    accepted = [json.loads(r.value) for r in of_job(await read_topic(settings, topics.JOBS), retry_id)]
    assert sum(1 for e in accepted if e["event"] == "job.accepted") == 1


async def test_a_retry_whose_records_are_all_delivered_again_changes_nothing_and_counts_nothing_twice(
        partner, settings, engine, api):
    from aiokafka import AIOKafkaProducer

    from .kafka_tools import wait_until_drained
    from .test_delivery import _snapshot

    d = unique_domain()
    original = await partner.run(people(d), "people.csv", column_map={"Mail": "email"})
    retry = ImportRequest(requested_by="e2e", file_name="fixes.csv", content=f"row,email\n2,bob@{d}\n4,di@{d}\n",
                          idempotency_key=f"fix-{d}", retry_of=original.job_id)
    retry_id = jobs.idempotent_job_id("topic", "e2e", f"fix-{d}")
    await partner.client.submit(retry)
    note = (await partner.client.wait([retry_id], 60))[retry_id]
    assert (note.created, note.rejected) == (2, 0)
    await wait_until_drained(settings)
    before = await _snapshot(engine, retry_id, d)

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap_servers,
                                max_request_size=settings.request_max_bytes)
    await producer.start()
    try:
        for topic in (topics.JOBS, topics.CHUNKS, topics.ROWS_ACCEPTED, topics.ROWS_REJECTED, topics.ROWS_WRITTEN):
            for record in of_job(await read_topic(settings, topic), retry_id):
                await producer.send_and_wait(topic, record.value, key=record.key, partition=record.partition)
    finally:
        await producer.stop()
    await wait_until_drained(settings)
    await asyncio.sleep(0.6)  # past the API's read cache

    assert await _snapshot(engine, retry_id, d) == before
    assert len(of_job(await read_topic(settings, topics.NOTIFICATIONS), retry_id)) == 1
    async with httpx.AsyncClient(base_url=api) as http:
        document = (await http.get(f"/imports/{original.job_id}", headers=AUTH)).json()
    assert (document["still_rejected"], [r["created"] for r in document["retries"]]) == (1, [2])


async def test_a_retry_asking_for_a_dry_run_on_the_topic_is_refused_and_writes_nothing(partner, engine):
    d = unique_domain()
    original = await partner.run(people(d), "people.csv", column_map={"Mail": "email"})
    dry = ImportRequest(requested_by="e2e", file_name="fixes.csv", content=f"row,email\n2,bob@{d}\n",
                        idempotency_key=f"dry-{d}", retry_of=original.job_id, options=ImportOptions(dry_run=True))
    dry_id = jobs.idempotent_job_id("topic", "e2e", f"dry-{d}")

    await partner.client.submit(dry)
    refused = (await partner.client.wait([dry_id], 60))[dry_id]

    assert (refused.status, refused.reason.code) == (JobStatus.REJECTED, "invalid_options")
    assert "dry_run" in refused.reason.message
    assert sorted(await clients_of(engine, d)) == [f"ann@{d}"]


async def test_an_undone_retry_gives_its_rows_back_and_an_undone_import_is_not_retried(api, engine, partner):
    from .test_undo import undone

    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        original = await imported(http, d)
        fix = {"rows": [{"row": 2, "values": {"Mail": f"bob@{d}"}}]}
        first = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH, json=fix)
        assert first.status_code == 202, first.text
        await poll(http, first.json()["status_url"])
        assert sorted(await clients_of(engine, d)) == [f"ann@{d}", f"bob@{d}"]

        undo = await undone(http, first.json()["job_id"])  # Bob goes: row 2 is rejected again
        assert (undo["status"], undo["deleted"]) == ("completed", 1)
        await asyncio.sleep(0.6)  # past the read cache
        grid = (await http.get(f"/imports/{original['job_id']}/retry", headers=AUTH)).json()
        document = (await http.get(original["links"]["self"], headers=AUTH)).json()
        errors = await http.get(original["links"]["errors_csv"], headers=AUTH)
        assert [r["row"] for r in grid["rows"]] == [2, 3, 4] and document["still_rejected"] == 3
        assert [r["row"] for r in csv.DictReader(io.StringIO(errors.text.lstrip("\ufeff")))] == ["2", "3", "4"]

        again = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH, json=fix)
        assert again.status_code == 202 and again.json()["rows"]["retried"] == [2], again.text
        assert (await poll(http, again.json()["status_url"]))["created"] == 1

        await undone(http, original["job_id"])
        await asyncio.sleep(0.6)
        refused = await http.post(f"/imports/{original['job_id']}/retry", headers=AUTH,
                                  json={"rows": [{"row": 3, "values": {"firstName": "Cy"}}]})

    assert (refused.status_code, refused.json()["code"]) == (409, "not_retryable"), refused.text
    assert "undone" in refused.json()["message"]
