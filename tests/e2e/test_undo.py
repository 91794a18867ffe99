"""Undoing an import, end to end on the real broker and database: through the API, and on the topic."""

import csv
import io
import json
import uuid

import httpx

from shared import jobs, topics
from shared.events import ImportRequest, JobStatus, Source

from .conftest import clients_of, unique_domain
from .kafka_tools import of_job, read_topic
from .test_api import AUTH, poll, upload

NAMES = ("first_name", "last_name", "username", "desk")


def names(clients: dict[str, dict]) -> dict[str, tuple]:
    return {email: tuple(c[n] for n in NAMES) for email, c in clients.items()}


async def imported(http: httpx.AsyncClient, text: str, name: str = "clients.csv", **fields) -> dict:
    answer = await upload(http, text, name, **fields)
    assert answer.status_code == 202, answer.text
    return await poll(http, answer.json()["status_url"])


async def undone(http: httpx.AsyncClient, job_id: str) -> dict:
    answer = await http.post(f"/imports/{job_id}/undo", headers=AUTH)
    assert answer.status_code == 202, answer.text
    accepted = answer.json()
    assert accepted["status_url"] == f"/imports/{accepted['job_id']}"
    return await poll(http, accepted["status_url"])


async def test_undo_the_second_import_then_the_first(api, engine):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        first = await imported(http, f"firstName,email,lastName\nAnn,ann@{d},Lee\nBob,bob@{d},Ray\n")
        before = names(await clients_of(engine, d))
        second = await imported(http, f"firstName,email,lastName,desk\nAnnie,ann@{d},Lea,D7\nCat,cat@{d},Cole,\n",
                                "second.csv")
        assert (second["created"], second["updated"]) == (1, 1)

        undo = await undone(http, second["job_id"])

        assert (undo["kind"], undo["undo_of"], undo["status"]) == ("undo", second["job_id"], "completed")
        assert (undo["total"], undo["deleted"], undo["restored"], undo["conflicts"]) == (2, 1, 1, 0)
        assert undo["file_name"] == "second.csv" and undo["message"].startswith("Undid the import of second.csv")
        assert names(await clients_of(engine, d)) == before  # Ann's earlier values back, Cat gone
        second_now = (await http.get(f"/imports/{second['job_id']}", headers=AUTH)).json()
        assert second_now["undone_by"] == undo["job_id"] and second_now["undone_at"] is not None
        assert "undo" not in second_now["links"] and "undo" in first["links"]  # no link to a certain refusal

        again = await http.post(f"/imports/{second['job_id']}/undo", headers=AUTH)
        assert again.status_code == 409 and again.json()["code"] == "already_undone"

        undo_first = await undone(http, first["job_id"])
        assert (undo_first["deleted"], undo_first["restored"], undo_first["conflicts"]) == (2, 0, 0)
        assert await clients_of(engine, d) == {}


async def test_a_client_changed_since_is_kept_and_listed_in_conflicts_csv(api, engine):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        first = await imported(http, f"firstName,email,lastName\nAnn,ann@{d},Lee\nBob,bob@{d},Ray\nCid,cid@{d},Cox\n",
                               "Résumé.csv")
        await imported(http, f"firstName,email\nRobert,bob@{d}\n")  # a later import changes Bob

        undo = await undone(http, first["job_id"])
        report = await http.get(undo["links"]["conflicts_csv"], headers=AUTH)

    assert undo["status"] == "completed_with_errors"
    assert (undo["total"], undo["deleted"], undo["restored"], undo["conflicts"]) == (3, 2, 0, 1)
    assert undo["deleted"] + undo["restored"] + undo["conflicts"] + undo["unchanged"] == undo["total"]
    assert list(await clients_of(engine, d)) == [f"bob@{d}"]
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert report.headers["content-disposition"] == (
        "attachment; filename=\"Resume-conflicts.csv\"; filename*=UTF-8''R%C3%A9sum%C3%A9-conflicts.csv")
    rows = list(csv.DictReader(io.StringIO(report.text.lstrip("\ufeff"))))
    assert [(r["row"], r["email"], r["field"], r["now"], r["undo_would_write"], r["reason"]) for r in rows] == [
        ("2", f"bob@{d}", "first_name", "Robert", "(client deleted)", "changed_since")]


async def test_what_cannot_be_undone_is_answered_with_its_code(api):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        unknown = await http.post(f"/imports/{uuid.uuid4()}/undo", headers=AUTH)
        dry = await imported(http, f"firstName,email\nDee,dee@{d}\n", dry_run="true")
        refused = await imported(http, "not,a,clients,file\n")
        nothing = await http.post(f"/imports/{dry['job_id']}/undo", headers=AUTH)
        whole = await http.post(f"/imports/{refused['job_id']}/undo", headers=AUTH)
        no_token = await http.post(f"/imports/{dry['job_id']}/undo")

    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_import")
    assert (nothing.status_code, nothing.json()["code"]) == (409, "nothing_to_undo")
    assert (whole.status_code, whole.json()["code"]) == (409, "nothing_to_undo")
    assert no_token.status_code == 401


def undo_request(undo_of: str, key: str, requested_by: str = "e2e") -> ImportRequest:
    """An undo on the topic, unsigned, as a partner sends it: by default from the requester of partner.run's imports."""
    return ImportRequest(idempotency_key=key, requested_by=requested_by, undo_of=undo_of)


async def test_an_undo_request_on_the_topic_delivered_twice_is_one_undo(partner, settings, engine):
    d = unique_domain()
    original = await partner.run(f"firstName,email\nAnn,ann@{d}\nBob,bob@{d}\n")
    key = f"undo-{d}"
    undo_job = jobs.idempotent_job_id("topic", "e2e", key)

    await partner.client.submit(undo_request(original.job_id, key), key=key)
    await partner.client.submit(undo_request(original.job_id, key), key=key)  # the same request, delivered again
    note = (await partner.client.wait([undo_job]))[undo_job]

    assert (note.kind, note.undo_of, note.status) == ("undo", original.job_id, JobStatus.COMPLETED)
    assert (note.total, note.deleted, note.restored, note.conflicts) == (2, 2, 0, 0)
    assert note.source is Source.TOPIC and note.requested_by == "e2e"
    assert await clients_of(engine, d) == {}
    written = [json.loads(r.value) for r in of_job(await read_topic(settings, topics.ROWS_WRITTEN), undo_job)]
    # Whether the second delivery came before the undo ended (planned again: the writers re-send their
    # recorded results) or after (a repeat): each row has one result, and was counted once.
    assert {(r["row"], r["outcome"]) for e in written for r in e["results"]} == {(1, "deleted"), (2, "deleted")}

    other = undo_request(original.job_id, f"another-{d}")  # a second undo of the same import
    await partner.client.submit(other, key="x")
    other_job = jobs.idempotent_job_id("topic", "e2e", f"another-{d}")
    refused = (await partner.client.wait([other_job]))[other_job]
    assert (refused.status, refused.reason.code, refused.kind) == (JobStatus.REJECTED, "already_undone", "undo")


async def test_an_undo_request_naming_an_unknown_import_is_rejected(partner):
    key = f"undo-{uuid.uuid4()}"
    await partner.client.submit(undo_request(str(uuid.uuid4()), key, "partner-e2e"), key=key)
    job = jobs.idempotent_job_id("topic", "partner-e2e", key)
    note = (await partner.client.wait([job]))[job]
    assert (note.status, note.reason.code) == (JobStatus.REJECTED, "unknown_import")



async def test_the_same_idempotency_key_is_the_same_undo_and_another_key_is_already_undone(api, engine):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        original = await imported(http, f"firstName,email\nEve,eve@{d}\n")
        key = {**AUTH, "Idempotency-Key": f"undo-{d}"}
        first = await http.post(f"/imports/{original['job_id']}/undo", headers=key)
        undo = await poll(http, first.json()["status_url"])
        again = await http.post(f"/imports/{original['job_id']}/undo", headers=key)
        other = await http.post(f"/imports/{original['job_id']}/undo", headers={**AUTH, "Idempotency-Key": f"x-{d}"})

    assert first.status_code == again.status_code == 202
    assert again.json() == {"job_id": undo["job_id"], "status": "completed", "status_url": f"/imports/{undo['job_id']}"}
    assert (other.status_code, other.json()["code"]) == (409, "already_undone")
    assert undo["deleted"] == 1 and await clients_of(engine, d) == {}


async def test_on_the_topic_another_requester_may_not_undo_an_import_and_its_owner_still_may(partner, api, engine):
    # Finding 1: a topic undo from another partner took the import away, and its owner got already_undone.
    d = unique_domain()
    original = await partner.run(f"firstName,email\nAnn,ann@{d}\n")
    async with httpx.AsyncClient(base_url=api) as http:
        by_api = await imported(http, f"firstName,email\nBob,bob@{d}\n")
    evil, posing = f"evil-{d}", f"posing-{d}"

    await partner.client.submit(undo_request(original.job_id, evil, "partner-evil"), key=evil)
    await partner.client.submit(undo_request(by_api["job_id"], posing, "api"), key=posing)  # says it is our API
    evil_job, posing_job = jobs.idempotent_job_id("topic", "partner-evil", evil), jobs.idempotent_job_id("topic", "api", posing)
    refused = await partner.client.wait([evil_job, posing_job])
    owner = f"owner-{d}"
    await partner.client.submit(undo_request(original.job_id, owner), key=owner)
    owner_job = jobs.idempotent_job_id("topic", "e2e", owner)
    undone_note = (await partner.client.wait([owner_job]))[owner_job]

    assert [(refused[j].status, refused[j].reason.code) for j in (evil_job, posing_job)] == [
        (JobStatus.REJECTED, "undo_not_allowed")] * 2
    assert (undone_note.status, undone_note.deleted) == (JobStatus.COMPLETED, 1)
    assert set(await clients_of(engine, d)) == {f"bob@{d}"}
