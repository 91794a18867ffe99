"""The HTTP API, as a partner system uses it, on the real broker and database."""

import asyncio
import csv
import io

import httpx

from ..conftest import API_TOKEN
from .conftest import clients_of, unique_domain

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
FINAL = {"completed", "completed_with_errors", "validated", "rejected", "failed"}


async def poll(http: httpx.AsyncClient, status_url: str, timeout: float = 60) -> dict:
    for _ in range(int(timeout / 0.2)):
        document = (await http.get(status_url, headers=AUTH)).json()
        if document["status"] in FINAL:
            return document
        await asyncio.sleep(0.2)
    raise AssertionError(f"{status_url} never finished: {document}")


async def upload(http, data: bytes | str, name: str = "clients.csv", headers=None, **fields) -> httpx.Response:
    raw = data.encode() if isinstance(data, str) else data
    return await http.post("/imports", files={"file": (name, raw, "text/csv")}, data=fields, headers={**AUTH, **(headers or {})})


async def test_an_upload_is_followed_to_its_end_and_both_reports_download(api, engine):
    d = unique_domain()
    text = f"firstName,email,lastName\nAnn,ann@{d},=SUM(A1)\nBob,bob@{d},Ray\n,nofirst@{d},@cmd\n"
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await upload(http, text)
        assert answer.status_code == 202
        accepted = answer.json()
        assert accepted["status"] == "received" and accepted["status_url"] == f"/imports/{accepted['job_id']}"

        job = await poll(http, accepted["status_url"])
        errors = (await http.get(job["links"]["errors_csv"], headers=AUTH))
        results = (await http.get(job["links"]["results_csv"], headers=AUTH))

    assert (job["status"], job["total"], job["created"], job["rejected"], job["processed"]) == ("completed_with_errors", 3, 1, 2, 3)
    assert [e["code"] for e in job["errors"]] == ["formula_injection", "formula_injection", "missing_first_name"]
    assert errors.headers["content-type"].startswith("text/csv")
    report = list(csv.DictReader(io.StringIO(errors.text.lstrip("\ufeff"))))
    assert [r["row"] for r in report] == ["1", "3"]
    assert report[0]["lastName"] == "'=SUM(A1)", "a formula must reach the report escaped"
    assert report[1]["lastName"] == "'@cmd" and "first name is empty" in report[1]["errors"]
    outcomes = list(csv.DictReader(io.StringIO(results.text.lstrip("\ufeff"))))
    assert [(r["row"], r["email"], r["outcome"]) for r in outcomes] == [("2", f"bob@{d}", "created")]
    assert outcomes[0]["client_id"] == (await clients_of(engine, d))[f"bob@{d}"]["id"]


async def test_every_route_but_health_needs_the_token(api):
    async with httpx.AsyncClient(base_url=api) as http:
        assert (await http.get("/healthz")).status_code == 200
        for method, path in [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/imports"), ("GET", "/imports/x"), ("GET", "/imports/x/errors.csv"),
                             ("GET", "/imports/x/results.csv"), ("GET", "/clients"), ("GET", "/settings"),
                             ("POST", "/imports"), ("GET", "/clients-template.csv")]:
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": API_TOKEN}):
                answer = await http.request(method, path, headers=headers)
                assert answer.status_code == 401, (method, path, headers)
                assert answer.json() == {"code": "unauthorized", "message": answer.json()["message"]}
                assert "job" not in answer.text.lower()


async def test_the_page_signs_in_with_the_token_for_an_http_only_strict_cookie(api):
    async with httpx.AsyncClient(base_url=api) as http:
        assert (await http.post("/session", json={"token": "wrong"})).status_code == 401
        signed = await http.post("/session", json={"token": API_TOKEN})
        assert signed.status_code == 204
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert (await http.get("/clients")).status_code == 200
        assert (await http.delete("/session")).status_code == 403  # with the cookie, not from the page
        assert (await http.delete("/session", headers={"Origin": api})).status_code == 204
        http.cookies.clear()
        assert (await http.get("/clients")).status_code == 401


async def test_a_file_not_named_csv_is_refused(api):
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await upload(http, "firstName,email\nA,a@b.com\n", name="clients.xlsx")
    assert answer.status_code == 415 and answer.json()["code"] == "not_csv_name"


async def test_the_byte_limit_holds_while_the_upload_streams_without_a_length(api, settings):
    async def body():
        boundary = b"--limit\r\n"
        yield boundary + b'Content-Disposition: form-data; name="file"; filename="big.csv"\r\n\r\nfirstName,email\r\n'
        for _ in range(settings.max_bytes // 65536 + 200):
            yield b"a" * 65536

    async with httpx.AsyncClient(base_url=api) as http:
        answer = await http.post("/imports", content=body(),
                                 headers={**AUTH, "Content-Type": "multipart/form-data; boundary=limit"})
    assert answer.status_code == 413 and answer.json()["code"] == "file_too_large"


async def test_the_same_idempotency_key_is_one_job(api, engine):
    d = unique_domain()
    text = f"firstName,email\nIda,ida@{d}\n"
    key = {"Idempotency-Key": f"key-{d}"}
    async with httpx.AsyncClient(base_url=api) as http:
        first = (await upload(http, text, headers=key)).json()
        await poll(http, first["status_url"])
        second = await upload(http, text, headers=key)
        other_file = await upload(http, f"firstName,email\nEve,eve@{d}\n", headers=key)  # Tuesday's file, Monday's key
        listing = (await http.get("/imports", params={"limit": 200}, headers=AUTH)).json()
    assert second.status_code == 202 and second.json()["job_id"] == first["job_id"]
    assert second.json()["status"] == "completed"
    assert (other_file.status_code, other_file.json()["code"]) == (409, "idempotency_key_reused")
    assert [j["job_id"] for j in listing["items"]].count(first["job_id"]) == 1


async def test_clients_are_listed_searched_and_paged(api):
    d = unique_domain()
    rows = "".join(f"Zed{i},zed{i}@{d}\n" for i in range(7))
    async with httpx.AsyncClient(base_url=api) as http:
        await poll(http, (await upload(http, "firstName,email\n" + rows)).json()["status_url"])
        page = (await http.get("/clients", params={"q": d, "limit": 5, "offset": 5}, headers=AUTH)).json()
        settings = (await http.get("/settings", headers=AUTH)).json()
        template = await http.get("/clients-template.csv", headers=AUTH)
    assert page["total"] == 7 and len(page["items"]) == 2
    assert all(c["email"].endswith(d) for c in page["items"])
    assert settings["max_records"] == 5000 and settings["required_columns"] == ["firstName", "email"]
    assert template.text.splitlines()[0] == "firstName,email,username,middleName,lastName"
    assert "example1,example1@example.com,,,exampleL1" in template.text


async def test_the_openapi_document_lists_the_routes(api):
    async with httpx.AsyncClient(base_url=api) as http:
        assert (await http.get("/openapi.json")).status_code == 401
        paths = (await http.get("/openapi.json", headers=AUTH)).json()["paths"]
    assert {"/imports", "/imports/{job_id}", "/imports/{job_id}/errors.csv", "/imports/{job_id}/results.csv",
            "/clients", "/healthz"} <= set(paths)


async def test_every_error_answer_has_a_code_and_a_message(api):
    async with httpx.AsyncClient(base_url=api) as http:
        answers = [
            await http.get("/clients", params={"limit": 0}, headers=AUTH),
            await http.post("/session", json={}),
            await http.get("/no-such-route", headers=AUTH),
            await http.get("/imports/no-such-job", headers=AUTH),
        ]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [
        (422, "invalid_parameters"), (422, "invalid_parameters"), (404, "unknown_route"), (404, "unknown_import")]
    assert "limit" in answers[0].json()["message"] and "token" in answers[1].json()["message"]


async def test_an_ended_page_session_is_told_in_plain_words(api):
    async with httpx.AsyncClient(base_url=api, cookies={"clients_import_session": "expired"}) as http:
        answer = await http.get("/clients")
    assert answer.status_code == 401 and answer.json()["message"] == "Your session has ended: sign in again."


async def test_the_rejected_rows_are_fixed_in_errors_csv_and_imported_on_a_second_upload(api, engine):
    d = unique_domain()
    messy = f"firstName;email;lastName\nGood;good@{d};One\n;fix1@{d};Two\nBad;fix2@{d};=HYPERLINK(1)\n"
    async with httpx.AsyncClient(base_url=api) as http:
        first = await poll(http, (await upload(http, messy.encode("cp1252"), name="messy.csv")).json()["status_url"])
        report = (await http.get(first["links"]["errors_csv"], headers=AUTH)).text

        # What a person does in a spreadsheet: fill the empty first name, replace the formula.
        rows = list(csv.DictReader(io.StringIO(report.lstrip("\ufeff"))))
        rows[0]["firstName"] = "Fixed"
        rows[1]["lastName"] = "Plain"
        fixed = io.StringIO()
        writer = csv.DictWriter(fixed, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        second = await poll(http, (await upload(http, fixed.getvalue(), name="messy-errors.csv")).json()["status_url"])

    assert (first["created"], first["rejected"]) == (1, 2)
    assert (second["status"], second["created"], second["rejected"]) == ("completed", 2, 0)
    assert any(w["code"] == "unknown_columns" and "errors" in w["message"] for w in second["warnings"])
    stored = await clients_of(engine, d)
    assert (stored[f"fix1@{d}"]["first_name"], stored[f"fix2@{d}"]["last_name"]) == ("Fixed", "Plain")


async def test_an_unfixed_formula_uploaded_again_from_the_report_is_still_refused(api):
    d = unique_domain()
    async with httpx.AsyncClient(base_url=api) as http:
        first = await poll(http, (await upload(http, f"firstName,email\n=1+1,f@{d}\n")).json()["status_url"])
        report = (await http.get(first["links"]["errors_csv"], headers=AUTH)).text
        again = await poll(http, (await upload(http, report)).json()["status_url"])
    assert "'=1+1" in report
    assert (again["rejected"], again["errors"][0]["code"]) == (1, "formula_injection")
