"""POST /imports/{id}/retry over HTTP, on each database backend: whatever the body, an answer with a code, never
a 500. The broker is stood in for by a recorder of what would be published."""

import json
import uuid

import httpx
import pytest
from faststream.kafka.fastapi import KafkaRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.app import build_api
from shared.events import ImportRequest
from shared.settings import Settings

from .test_retry_basis import an_import

TOKEN = f"retry-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(db):
    router = KafkaRouter("127.0.0.1:9", schema_url=None)
    published: list[ImportRequest] = []

    async def publish(body: bytes, *_args, **_kwargs) -> None:
        published.append(ImportRequest.model_validate_json(body))

    router.broker.publish = publish
    app = build_api(Settings(_env_file=None, api_token=TOKEN, max_records=50, max_columns=10), db, router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
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
