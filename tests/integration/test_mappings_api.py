"""Saved mappings over HTTP, on each database backend: saved in versions, listed, read, deleted, all behind the
API token, and every bad request answered with a 4xx and a code."""

import json
import uuid
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.mappings import MAPPINGS_MAX, VERSIONS_KEPT
from shared.settings import Settings

from .in_process_api import api_client

TOKEN = f"mappings-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}", "X-Requested-By": "ops"}


@pytest.fixture
async def http(db):
    async with api_client(Settings(_env_file=None, api_token=TOKEN), db) as client:
        yield client


def unique(prefix: str = "partner") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_each_save_is_a_new_version_and_the_newest_is_the_one_read(http):
    name = unique()

    first = await http.put(f"/mappings/{name}", json={"columns": {"Mail": "email", "Vorname": "firstName"}}, headers=BEARER)
    second = await http.put(f"/mappings/{name}", json={"columns": {"E-Mail": "email", "Vorname": "first_name",
                                                                   "Notiz": None}}, headers=BEARER)

    assert first.status_code == second.status_code == 200, second.text
    assert (first.json()["version"], second.json()["version"]) == (1, 2)
    assert second.json()["saved_by"] == "ops"
    read = (await http.get(f"/mappings/{name}", headers=BEARER)).json()
    assert (read["version"], read["columns"]) == (2, {"E-Mail": "email", "Vorname": "first_name", "Notiz": None})
    listed = (await http.get("/mappings", headers=BEARER)).json()["items"]
    assert [(m["name"], m["version"]) for m in listed if m["name"] == name] == [(name, 2)]


async def test_a_save_and_a_later_read_give_the_same_time_in_utc(http):
    name = unique()

    saved = (await http.put(f"/mappings/{name}", json={"columns": {"Mail": "email"}}, headers=BEARER)).json()
    read = (await http.get(f"/mappings/{name}", headers=BEARER)).json()
    listed = [m for m in (await http.get("/mappings", headers=BEARER)).json()["items"] if m["name"] == name]

    assert saved["saved_at"].endswith("+00:00")
    assert read["saved_at"] == listed[0]["saved_at"] == saved["saved_at"]


async def test_a_deleted_mapping_is_gone_with_all_its_versions(http):
    name = unique()
    await http.put(f"/mappings/{name}", json={"columns": {"Mail": "email"}}, headers=BEARER)

    assert (await http.delete(f"/mappings/{name}", headers=BEARER)).status_code == 204
    gone = await http.get(f"/mappings/{name}", headers=BEARER)
    again = await http.delete(f"/mappings/{name}", headers=BEARER)
    assert (gone.status_code, gone.json()["code"]) == (404, "unknown_mapping")
    assert again.status_code == 404
    # saved again, it starts over at version 1
    assert (await http.put(f"/mappings/{name}", json={"columns": {}}, headers=BEARER)).json()["version"] == 1


async def test_only_the_newest_versions_are_kept(http):
    name = unique()
    for n in range(VERSIONS_KEPT + 3):
        await http.put(f"/mappings/{name}", json={"columns": {f"c{n}": "email"}}, headers=BEARER)

    assert (await http.get(f"/mappings/{name}", headers=BEARER)).json()["version"] == VERSIONS_KEPT + 3


async def test_every_mapping_route_needs_the_token(http):
    name = unique()
    answers = [await http.put(f"/mappings/{name}", json={"columns": {}}), await http.get("/mappings"),
               await http.get(f"/mappings/{name}"), await http.delete(f"/mappings/{name}"),
               await http.get("/mappings", headers={"Authorization": "Bearer wrong"})]

    assert [a.status_code for a in answers] == [401] * 5
    assert all(a.json()["code"] == "unauthorized" for a in answers)


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        ("/mappings/a%20b", {"columns": {}}, 422, "invalid_mapping_name"),
        ("/mappings/.hidden", {"columns": {}}, 422, "invalid_mapping_name"),
        (f"/mappings/{'x' * 65}", {"columns": {}}, 422, "invalid_mapping_name"),
        ("/mappings/ok", b"{not json", 422, "invalid_json"),
        ("/mappings/ok", b"[" * 3000 + b"]" * 3000, 422, "invalid_json"),
        ("/mappings/ok", {"cols": {}}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": {}, "extra": 1}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": ["Mail", "email"]}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": {"Mail": "phone"}}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": {"Mail": 1}}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": {f"c{i}": None for i in range(501)}}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": {"x" * 201: "email"}}, 422, "invalid_column_map"),
        ("/mappings/ok", {"columns": {f"{i:0>150}": None for i in range(500)}}, 413, "body_too_large"),
    ],
)
async def test_a_bad_save_is_answered_with_a_4xx_and_a_code(http, path, body, status, code):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    answer = await http.put(path, content=content, headers={**BEARER, "Content-Type": "application/json"})

    assert (answer.status_code, answer.json()["code"]) == (status, code), answer.text


async def test_the_number_of_saved_names_is_bounded(http, monkeypatch):
    monkeypatch.setattr("shared.mappings.MAPPINGS_MAX", 2)
    for _ in range(2):
        await http.put(f"/mappings/{unique()}", json={"columns": {}}, headers=BEARER)

    refused = await http.put(f"/mappings/{unique()}", json={"columns": {}}, headers=BEARER)

    assert MAPPINGS_MAX > 2 and (refused.status_code, refused.json()["code"]) == (409, "too_many_mappings")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=20), inner, max_size=3),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(max_size=20), body=st.one_of(json_values.map(json.dumps), st.binary(max_size=40).map(repr)))
async def test_any_save_is_answered_with_a_version_or_a_4xx_and_a_code(http, name, body):
    answer = await http.put(f"/mappings/{quote(name, safe='') or 'x'}", content=body.encode(),
                            headers={**BEARER, "Content-Type": "application/json"})

    # 307: a name ending in '/' is the framework's redirect to the path without it
    assert answer.status_code in {200, 307, 404, 405, 409, 422}, answer.text
    if answer.status_code == 307:
        return
    if answer.status_code == 200:
        assert answer.json()["version"] >= 1
    else:
        assert set(answer.json()) == {"code", "message"}


async def test_a_cross_site_save_or_delete_with_the_page_s_cookie_is_refused(http):
    """An attacker's page cannot change the mappings a signed-in person's browser would send the cookie for."""
    signed = await http.post("/session", json={"token": TOKEN})
    cookie = {"Cookie": "; ".join(f"{k}={v}" for k, v in signed.cookies.items())}
    http.cookies.clear()
    name = unique()
    foreign = {**cookie, "Origin": "http://evil.example"}

    saved = await http.put(f"/mappings/{name}", json={"columns": {"Mail": "email"}}, headers=foreign)
    deleted = await http.delete(f"/mappings/{name}", headers=foreign)
    own = await http.put(f"/mappings/{name}", json={"columns": {"Mail": "email"}}, headers={**cookie, "Origin": "http://api"})

    assert (saved.status_code, deleted.status_code) == (403, 403)
    assert own.status_code == 200, own.text
