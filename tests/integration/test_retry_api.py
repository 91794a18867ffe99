"""POST /imports/{id}/retry over HTTP, on each database backend: whatever the body, an answer with a code, never
a 500. The broker is stood in for by a recorder of what would be published."""

import json
import threading
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from shared import retries
from shared.db import insert_for
from shared.events import ImportRequest
from shared.settings import Settings
from shared.tables import import_jobs, job_retries, undo_claims

from .in_process_api import api_client
from .test_retry_basis import an_import, written

TOKEN = f"retry-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(db):
    published: list[ImportRequest] = []
    settings = Settings(_env_file=None, api_token=TOKEN, max_records=50, max_columns=10)
    async with api_client(settings, db, published) as client:
        yield client, published, await an_import(db, [2, 4], total=5)


async def test_json_rows_are_published_as_a_retry_of_the_import_with_only_its_rejected_rows_retried(api):
    http, published, original = api
    answer = await http.post(f"/imports/{original}/retry", headers=BEARER, json={"rows": [
        {"row": 4, "values": {"email": "p4@x.com"}}, {"row": 1, "values": {"email": "p1@x.com"}}]})

    assert answer.status_code == 202, answer.text
    assert answer.json()["rows"]["retried"] == [4] and answer.json()["rows"]["not_rejected"][0]["row"] == 1
    (request,) = published
    assert (request.retry_of, request.job_id) == (original, answer.json()["job_id"])
    assert request.file_bytes().decode().splitlines() == ["firstName,email,row", "P4,p4@x.com,4", ",p1@x.com,1"]


async def test_a_retry_that_cannot_start_is_answered_with_its_code(api):
    http, published, original = api
    none_left = await http.post(f"/imports/{original}/retry", headers=BEARER, json={"rows": [{"row": 1, "values": {}}]})
    unknown = await http.post("/imports/nope/retry", headers=BEARER, json={"rows": [{"row": 1, "values": {}}]})
    text = await http.post(f"/imports/{original}/retry", headers={**BEARER, "Content-Type": "text/plain"}, content=b"x")

    assert (none_left.status_code, none_left.json()["code"]) == (409, "nothing_to_retry")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_import")
    assert (text.status_code, text.json()["code"]) == (415, "not_multipart_or_json")
    assert published == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 8) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=16,
)
row_items = st.fixed_dictionaries({"row": st.one_of(st.integers(-2, 7), json_values),
                                   "values": st.one_of(st.dictionaries(st.text(max_size=300), st.text(max_size=20),
                                                                       max_size=12), json_values)})
bodies = st.one_of(
    json_values.map(json.dumps),
    st.lists(row_items, max_size=60).map(lambda rows: json.dumps({"rows": rows})),
    st.binary(max_size=60).map(lambda b: b.decode("latin-1")),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies, kind=st.sampled_from(["application/json", "multipart/form-data; boundary=x", "text/csv", ""]))
async def test_any_retry_body_is_answered_with_202_or_a_4xx_and_a_code(api, body, kind):
    http, _, original = api
    answer = await http.post(f"/imports/{original}/retry", content=body.encode("utf-8", "surrogatepass"),
                             headers={**BEARER, "Content-Type": kind})

    assert answer.status_code in {202, 400, 409, 413, 415, 422}, answer.text
    if answer.status_code != 202:
        assert set(answer.json()) == {"code", "message"}


async def test_an_edited_errors_csv_is_taken_as_a_file_and_published_whole(api):
    http, published, original = api
    fixed = "firstName,email,row,line,errors\r\nP2,p2@x.com,2,3,bad\r\n"
    answer = await http.post(f"/imports/{original}/retry", headers=BEARER,
                             files={"file": ("people-errors.csv", fixed.encode(), "text/csv")})

    assert answer.status_code == 202, answer.text
    assert published[-1].file_bytes().decode() == fixed and published[-1].file_name == "people-errors.csv"


async def test_the_openapi_document_describes_the_retry_route_both_ways_and_the_rows_to_fix(api):
    http, _, _ = api
    paths = (await http.get("/openapi.json", headers=BEARER)).json()["paths"]

    retry = paths["/imports/{job_id}/retry"]
    assert set(retry) == {"get", "post"}
    assert set(retry["post"]["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert "row" in retry["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["rows"]["items"][
        "properties"]


async def test_json_no_csv_text_holds_is_answered_422_and_nothing_is_published(api):
    http, published, original = api
    json_type = {**BEARER, "Content-Type": "application/json"}
    surrogate = await http.post(f"/imports/{original}/retry", headers=json_type,
                                content=b'{"rows": [{"row": 2, "values": {"email": "\\ud800"}}]}')
    nul = await http.post(f"/imports/{original}/retry", headers=json_type,
                          content=b'{"rows": [{"row": 2, "values": {"email": "a\\u0000@x.com"}}]}')
    utf16 = await http.post(f"/imports/{original}/retry", headers=json_type,
                            content='{"rows": [{"row": 2, "values": {"email": "a@x.com"}}]}'.encode("utf-16"))

    assert (surrogate.status_code, surrogate.json()["code"]) == (422, "invalid_rows")
    assert (nul.status_code, nul.json()["code"]) == (422, "invalid_rows") and "NUL" in nul.json()["message"]
    assert (utf16.status_code, utf16.json()["code"]) == (422, "invalid_json") and "UTF-8" in utf16.json()["message"]
    assert published == []


async def test_a_job_id_no_job_can_have_is_404_on_every_import_route_before_any_query(api):
    http, _, _ = api
    for bad in ("a%00b", "a%0Ab", "a%E2%80%AEb", "x" * 65):
        answers = [await http.get(f"/imports/{bad}", headers=BEARER),
                   await http.get(f"/imports/{bad}/retry", headers=BEARER),
                   await http.post(f"/imports/{bad}/retry", headers=BEARER, json={"rows": [{"row": 1, "values": {}}]}),
                   await http.post(f"/imports/{bad}/undo", headers=BEARER),
                   *[await http.get(f"/imports/{bad}/{kind}.csv", headers=BEARER)
                     for kind in ("errors", "results", "conflicts")]]
        assert {(a.status_code, a.json()["code"]) for a in answers} == {(404, "unknown_import")}, bad


async def test_a_retry_refuses_options_it_does_not_take_with_a_sentence(api):
    http, published, original = api
    upload = {"file": ("f.csv", b"row,email\r\n2,p2@x.com\r\n", "text/csv")}
    dry = await http.post(f"/imports/{original}/retry", headers=BEARER, data={"dry_run": "true"}, files=upload)
    mode = await http.post(f"/imports/{original}/retry", headers=BEARER, data={"mode": "create_only"}, files=upload)
    json_dry = await http.post(f"/imports/{original}/retry", headers=BEARER,
                               json={"rows": [{"row": 2, "values": {}}], "dry_run": True})

    typo = await http.post(f"/imports/{original}/retry", headers=BEARER, data={"dry_run": "ture"}, files=upload)

    for answer, named in ((dry, "dry_run"), (mode, "mode"), (json_dry, "dry_run")):
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_options"), answer.text
        assert f"takes no {named}" in answer.json()["message"]
    assert (typo.status_code, typo.json()["code"]) == (422, "invalid_options")  # not a real retry
    assert "dry_run must be one of" in typo.json()["message"]
    assert published == []


async def test_a_json_key_naming_no_column_is_warned_of_and_carried_for_the_uploader(api):
    http, published, original = api
    answer = await http.post(f"/imports/{original}/retry", headers=BEARER,
                             json={"rows": [{"row": 2, "values": {"email": "p2@x.com", "Notes": "vip"}}]})

    assert answer.status_code == 202, answer.text
    assert [w["code"] for w in answer.json()["rows"]["warnings"]] == ["unknown_columns"]
    assert published[-1].file_bytes().decode().splitlines()[0] == "firstName,email,Notes,row"


async def test_the_json_form_is_made_a_csv_off_the_event_loop(api, monkeypatch):
    http, published, original = api
    threads: list[int] = []
    real = retries.rows_csv
    monkeypatch.setattr(retries, "rows_csv", lambda *a, **k: threads.append(threading.get_ident()) or real(*a, **k))

    answer = await http.post(f"/imports/{original}/retry", headers=BEARER, json={"rows": [{"row": 2, "values": {}}]})
    assert answer.status_code == 202 and threads and threading.get_ident() not in threads


async def test_an_undone_import_is_not_retried_and_an_undone_retry_gives_its_rows_back(api, db):
    http, published, original = api
    retry = await an_import(db, [], total=1, retry_of=original)
    async with db.begin() as conn:
        await conn.execute(insert_for(conn.dialect.name, job_retries).values(
            job_id=retry, retry_of=original, rows={"2": original}, taken_at=datetime.now(UTC)))
    await written(db, retry, {2: "created"})
    assert [r["row"] for r in (await http.get(f"/imports/{original}/retry", headers=BEARER)).json()["rows"]] == [4]

    async with db.begin() as conn:  # an undo of the retry under way: it holds the retry's claim
        await conn.execute(insert_for(conn.dialect.name, undo_claims).values(
            undo_of=retry, job_id="undo-r", claimed_at=datetime.now(UTC)))
    rows = (await http.get(f"/imports/{original}/retry", headers=BEARER)).json()["rows"]
    errors_csv = (await http.get(f"/imports/{original}/errors.csv", headers=BEARER)).text
    document = (await http.get(f"/imports/{original}", headers=BEARER)).json()
    assert [r["row"] for r in rows] == [2, 4] and document["still_rejected"] == 2
    assert len(errors_csv.strip().splitlines()) == 3

    async with db.begin() as conn:  # the import itself undone
        await conn.execute(update(import_jobs).where(import_jobs.c.id == original).values(undone_by="undo-x"))
    refused = await http.post(f"/imports/{original}/retry", headers=BEARER, json={"rows": [{"row": 2, "values": {}}]})
    assert (refused.status_code, refused.json()["code"]) == (409, "not_retryable")
    assert "undone" in refused.json()["message"] and published == []
