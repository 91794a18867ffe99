"""POST /imports/preview on each database backend: a file's columns with their samples and fields, what is
missing, the first rows as they would be imported with each problem, under a column map and a saved mapping;
the upload's bounds; and never a 5xx, whatever the bytes and the map."""

import asyncio
import json
import uuid

import httpx
import pytest
from faststream.kafka.fastapi import KafkaRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.app import build_api
from services.api.preview import PREVIEW_ROWS, SAMPLES, SHOWN_CHARS
from shared.settings import Settings

TOKEN = f"preview-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
PARTNER = "Vorname,Nachname,Mail,Notiz\nAnn,Lee,ann@x.com,hi\nBob,,bob@x,\nCid,Ray,ANN@x.com,=1+2\nDee,Fox,dee@x.com,\n"
PARTNER_MAP = {"Vorname": "firstName", "Nachname": "lastName", "Mail": "email", "Notiz": None}


@pytest.fixture
async def http(db):
    app = build_api(Settings(_env_file=None, api_token=TOKEN, max_bytes=64 * 1024), db,
                    KafkaRouter("127.0.0.1:9", schema_url=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client


async def preview(http, data: str | bytes, name: str = "clients.csv", **fields) -> httpx.Response:
    raw = data.encode() if isinstance(data, str) else data
    return await http.post("/imports/preview", files={"file": (name, raw, "text/csv")}, data=fields, headers=BEARER)


async def test_a_header_that_needs_mapping_shows_its_columns_samples_and_what_is_missing(http):
    answer = await preview(http, PARTNER)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [(c["name"], c["field"], c["by"]) for c in body["columns"]] == [
        ("Vorname", None, None), ("Nachname", None, None), ("Mail", None, None), ("Notiz", None, None)]
    assert body["columns"][0]["samples"] == ["Ann", "Bob", "Cid"][:SAMPLES]
    assert body["missing"] == [{"field": "firstName", "looks_like": ["Vorname"]}, {"field": "email", "looks_like": ["Mail"]}]
    assert body["refused"]["code"] == "missing_columns" and body["rows"] == [] and body["total"] is None
    assert body["needs_mapping"]


async def test_under_a_map_the_rows_show_as_they_would_be_imported_with_each_problem(http):
    answer = await preview(http, PARTNER, column_map=json.dumps(PARTNER_MAP))

    body = answer.json()
    assert [(c["name"], c["field"], c["by"]) for c in body["columns"]] == [
        ("Vorname", "firstName", "map"), ("Nachname", "lastName", "map"), ("Mail", "email", "map"), ("Notiz", None, "map")]
    assert (body["missing"], body["refused"], body["total"], body["needs_mapping"]) == ([], None, 4, False)
    rows = body["rows"]
    assert [r["accepted"] for r in rows] == [True, False, False, True]
    assert rows[0]["values"]["email"] == "ann@x.com" and rows[0]["values"]["lastName"] == "Lee"
    assert [(e["code"], e["field"]) for e in rows[1]["errors"]] == [("invalid_email", "email")]
    assert rows[1]["values"]["email"] == "bob@x"  # as given, where a rule stopped it
    # the ignored column's formula is no problem; the repeated email (in another case) is
    assert [(e["code"], e["field"]) for e in rows[2]["errors"]] == [("duplicate_email", "email")]
    assert [r["line"] for r in rows] == [2, 3, 4, 5]


async def test_recognised_headers_need_no_map_and_unknown_columns_are_ignored(http):
    body = (await preview(http, "First Name,E-mail Address,Phone\nAnn,ann@x.com,555\n")).json()

    assert [(c["field"], c["by"]) for c in body["columns"]] == [("firstName", "header"), ("email", "header"), (None, None)]
    assert body["refused"] is None and body["rows"][0]["accepted"]
    assert [w["code"] for w in body["warnings"]] == ["unknown_columns"]


async def test_a_saved_mapping_is_used_by_name_and_the_given_map_goes_over_it(http):
    name = f"partner-{uuid.uuid4().hex[:8]}"
    saved = await http.put(f"/mappings/{name}", json={"columns": {**PARTNER_MAP, "Nachname": None}}, headers=BEARER)

    by_name = (await preview(http, PARTNER, mapping=name)).json()
    over = (await preview(http, PARTNER, mapping=name, column_map=json.dumps({"Nachname": "lastName"}))).json()
    unknown = (await preview(http, PARTNER, mapping=f"{name}-gone")).json()

    assert by_name["mapping"] == {"name": name, "version": saved.json()["version"]}
    assert [c["field"] for c in by_name["columns"]] == ["firstName", None, "email", None]
    assert [c["field"] for c in over["columns"]] == ["firstName", "lastName", "email", None]
    assert unknown["refused"]["code"] == "unknown_mapping" and unknown["rows"] == []
    assert [c["name"] for c in unknown["columns"]] == ["Vorname", "Nachname", "Mail", "Notiz"]


async def test_a_map_that_does_not_fit_is_the_refusal_and_the_columns_still_show(http):
    body = (await preview(http, PARTNER, column_map=json.dumps({"Mial": "email"}))).json()

    assert body["refused"]["code"] == "invalid_column_map"
    assert [c["name"] for c in body["columns"]] == ["Vorname", "Nachname", "Mail", "Notiz"]


async def test_a_file_refused_whole_says_why_and_shows_no_columns(http):
    body = (await preview(http, b"PK\x03\x04xl/workbook")).json()

    assert body["refused"]["code"] == "excel_workbook" and body["columns"] == [] and not body["needs_mapping"]


async def test_only_the_first_rows_are_shown_and_long_values_are_cut(http):
    long = "x" * (SHOWN_CHARS + 50)
    rows = "".join(f"N{i},n{i}@x.com,{long}\n" for i in range(PREVIEW_ROWS + 5))
    body = (await preview(http, f"firstName,email,desk\n{rows}")).json()

    assert (len(body["rows"]), body["total"], body["rows_shown"]) == (PREVIEW_ROWS, PREVIEW_ROWS + 5, PREVIEW_ROWS)
    assert len(body["rows"][0]["values"]["desk"]) == SHOWN_CHARS and body["rows"][0]["values"]["desk"].endswith("…")
    assert len(body["columns"][2]["samples"][0]) == SHOWN_CHARS


@pytest.mark.parametrize(
    "kwargs, status, code",
    [
        ({"name": "clients.xlsx"}, 415, "not_csv_name"),
        ({"column_map": "{not json"}, 422, "invalid_json"),
        ({"column_map": json.dumps({"Mail": "phone"})}, 422, "invalid_column_map"),
        ({"mapping": "a b"}, 422, "invalid_mapping_name"),
    ],
)
async def test_a_bad_form_is_answered_as_post_imports_answers_it(http, kwargs, status, code):
    answer = await preview(http, PARTNER, **kwargs)

    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text


async def test_the_upload_s_bounds_hold(http):
    too_big = await preview(http, "firstName,email\n" + "Ann,ann@x.com\n" * 6000)
    no_file = await http.post("/imports/preview", data={"column_map": "{}"}, files={"x": ("a", b"")}, headers=BEARER)
    no_token = await http.post("/imports/preview", files={"file": ("c.csv", b"a")})

    assert (too_big.status_code, too_big.json()["code"]) == (413, "file_too_large")
    assert (no_file.status_code, no_file.json()["code"]) == (422, "missing_file")
    assert no_token.status_code == 401


async def test_past_its_concurrency_a_preview_is_refused_busy_before_its_body_is_read(db):
    app = build_api(Settings(_env_file=None, api_token=TOKEN, max_bytes=64 * 1024, api_preview_concurrency=1), db,
                    KafkaRouter("127.0.0.1:9", schema_url=None))
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\nfirstName,email\r\nAnn,ann@x.com\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    headers = {**BEARER, "Content-Type": f"multipart/form-data; boundary={boundary}"}
    started, finish, read_second = asyncio.Event(), asyncio.Event(), []

    async def slow_body():  # the first preview's body, held until the second has been answered
        yield head
        started.set()
        await finish.wait()
        yield tail

    async def second_body():
        read_second.append(True)
        yield head + tail

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        first = asyncio.create_task(client.post("/imports/preview", content=slow_body(), headers=headers))
        await asyncio.wait_for(started.wait(), 10)
        busy = await client.post("/imports/preview", content=second_body(), headers=headers)
        finish.set()
        done = await asyncio.wait_for(first, 10)
        after = await preview(client, "firstName,email\nAnn,ann@x.com\n")

    assert (busy.status_code, busy.json()["code"], busy.headers["retry-after"]) == (503, "preview_busy", "2")
    assert read_second == []
    assert done.status_code == 200 and done.json()["total"] == 1
    assert after.status_code == 200  # the slot is given back


column_names = st.sampled_from(["Vorname", "Mail", "email", "firstName", "Notiz", "", " x ", "a,b"]) | st.text(max_size=8)
maps = st.dictionaries(column_names, st.none() | st.sampled_from(["email", "firstName", "fullName", "phone", ""]),
                       max_size=4)
files = st.one_of(
    st.binary(max_size=200),
    st.lists(st.lists(st.text(max_size=6), max_size=4), max_size=5).map(
        lambda rows: "\n".join(",".join(r) for r in [["Vorname", "Mail", "Notiz"], *rows]).encode()),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=files, column_map=st.none() | maps.map(json.dumps) | st.text(max_size=20),
       mapping=st.none() | st.text(max_size=10))
async def test_any_file_and_map_is_answered_with_a_preview_or_a_4xx_and_a_code(http, data, column_map, mapping):
    fields = {k: v for k, v in {"column_map": column_map, "mapping": mapping}.items() if v is not None}

    answer = await preview(http, data, **fields)

    assert answer.status_code in {200, 413, 422}, answer.text
    body = answer.json()
    if answer.status_code == 200:
        assert body["refused"] is None or set(body["refused"]) == {"code", "message", "field"}
        assert len(body["rows"]) <= PREVIEW_ROWS and all(len(c["samples"]) <= SAMPLES for c in body["columns"])
    else:
        assert set(body) == {"code", "message"}
