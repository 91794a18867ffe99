"""The API's read routes against hostile queries, on the served API, the real broker and database.

Each finding of issue 10 (queries) is here: LIKE wildcards matching every client, a huge `q` or
`offset` answering 500, dot segments in a path, job lists growing with what files named; and
Hypothesis over the query parameters: whatever they are, a 4xx with {code, message} or a 200.
"""

import asyncio
import json
from urllib.parse import quote_from_bytes, urlsplit

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import update

from services.api import readside
from shared.tables import import_jobs

from ..conftest import API_TOKEN
from .conftest import unique_domain
from .test_api import AUTH, poll, upload


async def imported(http: httpx.AsyncClient, rows: list[str]) -> str:
    answer = await upload(http, "firstName,lastName,email,username\n" + "\n".join(rows) + "\n")
    job = await poll(http, answer.json()["status_url"])
    assert job["status"] == "completed", job
    return job["job_id"]


async def test_like_wildcards_in_q_are_plain_text(api):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api, headers=AUTH) as http:
        await imported(http, [f"Ann,Lee,ann@{d},ann{d[:8]}", f"Bob,Ray,bob@{d},bob{d[:8]}"])
        everyone = (await http.get("/clients")).json()["total"]
        assert everyone >= 2
        for q in ("%", "_", "%%", "___", "%@%", f"%{d}", f"a_n@{d}"):
            answer = await http.get("/clients", params={"q": q})
            assert answer.status_code == 200, answer.text
            assert answer.json()["total"] == 0, (q, answer.json()["total"])
        found = (await http.get("/clients", params={"q": f"ann@{d}"})).json()
        assert [c["email"] for c in found["items"]] == [f"ann@{d}"] and found["total_exact"] is True


async def test_a_huge_q_offset_or_limit_answers_422_naming_its_limit(api):
    async with httpx.AsyncClient(base_url=api, headers=AUTH) as http:
        d = unique_domain()
        await imported(http, [f"Ann,Lee,ann@{d},ann{d[:8]}"])  # a LIKE pattern is only tried on a row
        cases = [
            ("/clients", {"q": "x" * 10_000}, str(readside.MAX_Q_CHARS)),
            ("/clients", {"q": "x" * (readside.MAX_Q_CHARS + 1)}, str(readside.MAX_Q_CHARS)),
            ("/clients", {"offset": str(2**64)}, str(readside.MAX_OFFSET)),
            ("/clients", {"offset": str(readside.MAX_OFFSET + 1)}, str(readside.MAX_OFFSET)),
            ("/clients", {"limit": str(2**70)}, "500"),
            ("/imports", {"offset": "9" * 40}, str(readside.MAX_OFFSET)),
            ("/imports", {"limit": "-1"}, "1"),
            ("/clients", {"q": "ann\x00"}, "control"),
        ]
        for path, params, limit in cases:
            answer = await http.get(path, params=params)
            assert answer.status_code == 422, (path, answer.status_code, answer.text[:200])
            body = answer.json()
            assert set(body) == {"code", "message"} and limit in body["message"], (path, body)
            assert len(answer.content) < 2000, "the answer does not echo the huge value back"
        huge = await http.get("/clients", params={"q": "x" * 60_000})  # past the head's own bound, before any route
        assert (huge.status_code, huge.json()["code"]) == (431, "head_too_large")
        assert (await http.get("/clients", params={"q": "x" * readside.MAX_Q_CHARS})).status_code == 200
        assert (await http.get("/clients", params={"offset": str(readside.MAX_OFFSET)})).json()["items"] == []


async def raw_get(api: str, target: str) -> tuple[int, dict]:
    """A request line sent as written: HTTP clients resolve dot segments before sending, attackers do not."""
    url = urlsplit(api)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {API_TOKEN}\r\n"
                 "Connection: close\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


async def test_a_path_with_dot_segments_is_refused_never_served_as_another_route(api):
    for target in ("/imports/../clients", "/imports/%2e%2e/clients", "/imports/%2E%2E", "/./clients", "/clients/.",
                   "/imports/x/../../clients", "/static/../clients", "/imports/%252e%252e/clients", "/imports/.%2e/clients?q=a"):
        status, body = await raw_get(api, target)
        assert (status, body["code"]) == (400, "invalid_path"), (target, status, body)
        assert "items" not in body
    status, body = await raw_get(api, "/clients?q=..")  # dots in a query are text
    assert status == 200 and "items" in body


async def test_the_list_of_imports_stays_small_after_files_with_wide_headers(api, engine):
    """Three files whose headers name 499 unknown columns of 200 characters, and one job as an older
    version stored it (every unknown column named in its warning): the list of 20 jobs stays a summary."""
    d = unique_domain()
    wide = ",".join(f"unknown column {i:03d} " + "w" * 180 for i in range(497))
    async with httpx.AsyncClient(base_url=api, headers=AUTH) as http:
        ids = []
        for n in range(3):
            answer = await upload(http, f"firstName,email,{wide}\nAnn,ann{n}@{d}" + "," * 497 + "\n")
            ids.append((await poll(http, answer.json()["status_url"]))["job_id"])
        stored = [{"code": "unknown_columns", "message": "These columns were ignored: " + wide}] * 40
        async with engine.begin() as conn:
            await conn.execute(update(import_jobs).where(import_jobs.c.id == ids[0]).values(warnings=stored))
        listed = await http.get("/imports", params={"limit": 20})
        one = (await http.get(f"/imports/{ids[0]}")).json()

    assert listed.status_code == 200
    assert len(listed.content) < 20 * 8 * 1024, f"GET /imports?limit=20 is {len(listed.content):,} bytes"
    summary = next(j for j in listed.json()["items"] if j["job_id"] == ids[0])
    assert len(summary["warnings"]) == readside.LIST_WARNINGS and summary["warnings_more"] == 40 - readside.LIST_WARNINGS
    assert all(len(w["message"]) <= readside.MESSAGE_CHARS for w in summary["warnings"])
    assert len(one["warnings"]) == readside.JOB_WARNINGS and one["warnings_more"] == 40 - readside.JOB_WARNINGS
    assert len(json.dumps(one)) < 64 * 1024


_TEXT = st.one_of(st.text(max_size=300), st.sampled_from(["", "0", "-1", "1e3", "9" * 30, "%", "_", "\"", "NaN", " 5"]))
_NUMBER = st.one_of(st.integers(0, 600).map(str), st.integers(-(2**70), 2**70).map(str), _TEXT)
_RAW = st.binary(max_size=300)
_Q = st.one_of(_TEXT, _RAW, st.sampled_from(["x" * 60_000, "%" * 5000, "a" * 201, "a" * 200]))


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(path=st.sampled_from(["/clients", "/imports"]), q=_Q, limit=_NUMBER, offset=_NUMBER,
       extra=st.lists(st.tuples(_RAW, _RAW), max_size=3))
async def test_no_query_makes_a_read_route_answer_500(api, path, q, limit, offset, extra):
    def enc(value: str | bytes) -> str:
        return quote_from_bytes(value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value, safe="")

    query = "&".join([f"q={enc(q)}", f"limit={enc(limit)}", f"offset={enc(offset)}",
                      *(f"{enc(k)}={enc(v)}" for k, v in extra)])
    async with httpx.AsyncClient(base_url=api, headers=AUTH) as http:
        answer = await http.get(httpx.URL(f"{api}{path}", query=query.encode()))
    assert answer.status_code < 500, (answer.status_code, answer.text[:300])
    body = answer.json()
    if answer.status_code >= 400:
        assert set(body) == {"code", "message"} and body["message"], body
    else:
        assert isinstance(body["items"], list) and body["total"] >= len(body["items"])
