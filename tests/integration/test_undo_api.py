"""POST /imports/{id}/undo over HTTP, on each database backend. The broker is stood in for by a recorder of
what would be published."""

import uuid
from datetime import UTC, datetime

import pytest

from services.writer.upsert import apply_rows
from shared.db import insert_for
from shared.events import ImportRequest
from shared.settings import Settings
from shared.tables import import_jobs

from .in_process_api import api_client
from .test_ledgers import domain, rows

TOKEN = f"undo-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


async def an_import(db) -> str:
    """An ended import that created one client (its change recorded), as the pipeline leaves it."""
    job_id = str(uuid.uuid4())
    await apply_rows(db, rows(job_id, {"email": f"ann@{domain()}", "first_name": "Ann"}))
    async with db.begin() as conn:
        await conn.execute(insert_for(conn.dialect.name, import_jobs).values(
            id=job_id, file_name="people.csv", source="api", requested_by="api", mode="upsert", dry_run=False,
            status="completed", total=1, created=1, received_at=datetime.now(UTC), finished_at=datetime.now(UTC)))
    return job_id


@pytest.fixture
async def api(db):
    published: list[ImportRequest] = []
    async with api_client(Settings(_env_file=None, api_token=TOKEN), db, published) as client:
        yield client, published


async def test_one_idempotency_key_for_the_undo_of_another_import_is_refused(db, api):
    # Finding 4: the key's undo exists for import A; the same key for import B answered 202 with A's undo.
    http, published = api
    first, second = await an_import(db), await an_import(db)
    key = {**BEARER, "Idempotency-Key": f"undo-{uuid.uuid4()}"}

    taken = await http.post(f"/imports/{first}/undo", headers=key)
    again = await http.post(f"/imports/{first}/undo", headers=key)
    reused = await http.post(f"/imports/{second}/undo", headers=key)

    assert taken.status_code == again.status_code == 202 and again.json()["job_id"] == taken.json()["job_id"]
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    assert [r.undo_of for r in published] == [first, first]
    assert all(r.job_signature for r in published)  # our API signs: the uploader trusts it for any requester


async def test_a_second_undo_sent_before_any_uploader_took_the_first_is_refused(db, api):
    """No uploader runs here: the first undo is only recorded. Before, both got 202."""
    http, published = api
    target = await an_import(db)

    first = await http.post(f"/imports/{target}/undo", headers=BEARER)
    second = await http.post(f"/imports/{target}/undo", headers=BEARER)

    assert first.status_code == 202
    assert (second.status_code, second.json()["code"]) == (409, "already_undone")
    assert first.json()["job_id"] in second.json()["message"]
    assert [r.job_id for r in published] == [first.json()["job_id"]]


async def test_an_undo_the_broker_did_not_take_is_a_503_and_holds_nothing(db):
    """Before, a 500, and the undo recorded but never sent refused every other undo until its deadline."""
    from aiokafka.errors import KafkaConnectionError

    published: list[ImportRequest] = []
    failures: list[Exception] = [KafkaConnectionError("broker away")]
    async with api_client(Settings(_env_file=None, api_token=TOKEN), db, published, failures) as http:
        target = await an_import(db)
        refused = await http.post(f"/imports/{target}/undo", headers=BEARER)
        again = await http.post(f"/imports/{target}/undo", headers=BEARER)
        document = (await http.get(f"/imports/{target}", headers=BEARER)).json()

    assert (refused.status_code, refused.json()["code"], refused.headers["retry-after"]) == (503, "broker_unavailable", "5")
    assert again.status_code == 202 and [r.job_id for r in published] == [again.json()["job_id"]]
    assert document["undone_by"] is None


async def test_an_import_an_undo_holds_says_by_which_so_the_page_offers_no_undo(db, api):
    # Finding 14: an undo that failed keeps its claim; the page still offered "Undo import", which got a 409.
    from shared import undo

    http, _ = api
    held, free = await an_import(db), await an_import(db)
    async with db.begin() as conn:
        await undo.claim(conn, held, "failed-undo-1")

    one = (await http.get(f"/imports/{held}", headers=BEARER)).json()
    listed = {j["job_id"]: j for j in (await http.get("/imports?limit=200", headers=BEARER)).json()["items"]}
    assert (one["undo_claimed_by"], one["undone_by"]) == ("failed-undo-1", None)
    assert listed[held]["undo_claimed_by"] == "failed-undo-1" and listed[free]["undo_claimed_by"] is None
    # and the document offers no link that could only be refused
    assert "undo" not in one["links"] and "undo" not in listed[held]["links"] and "undo" in listed[free]["links"]
