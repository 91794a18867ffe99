"""The page's front door over real HTTP: uvicorn on a loopback port, the sessions in a SQLite file.

No broker is started (lifespan off): every request here is answered before anything is published.
"""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import uvicorn
from faststream.kafka.fastapi import KafkaRouter

from clients_import.local_kafka import free_port
from services.api.app import SESSION_COOKIE, build_api
from services.api.guards import SECURITY_HEADERS
from shared.db import create_engine, create_tables
from shared.settings import Settings

TOKEN = f"front-door-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
ATTEMPTS, WINDOW_S = 3, 1.5


class Served:
    """build_api under uvicorn on a free loopback port. `trusted_proxies` is uvicorn's forwarded_allow_ips
    (FORWARDED_ALLOW_IPS): only from those addresses are X-Forwarded-For and X-Forwarded-Proto believed."""

    def __init__(self, app, trusted_proxies: str) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_config=None,
                                                    access_log=False, forwarded_allow_ips=trusted_proxies))

    async def __aenter__(self) -> str:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self.url

    async def __aexit__(self, *_: object) -> None:
        self.server.should_exit = True
        await self.task


async def serve(tmp_path, trusted_proxies: str = "127.0.0.1"):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / f'front-{uuid.uuid4().hex[:6]}.db'}")
    await create_tables(engine)
    settings = Settings(_env_file=None, api_token=TOKEN, signin_attempts=ATTEMPTS, signin_window_s=WINDOW_S)
    app = build_api(settings, engine, KafkaRouter("127.0.0.1:9", schema_url=None))

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:  # stands for any bug: the unexpected failure still carries the headers
        raise RuntimeError("a bug")

    return Served(app, trusted_proxies), engine


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[str]:
    served, engine = await serve(tmp_path)
    async with served as url:
        yield url
    await engine.dispose()


async def signed_in(http: httpx.AsyncClient) -> dict[str, str]:
    """A fresh session, as the Cookie header a browser would send with it (the client keeps no cookie)."""
    answer = await http.post("/session", json={"token": TOKEN})
    assert answer.status_code == 204, answer.text
    http.cookies.clear()
    return {"Cookie": f"{SESSION_COOKIE}={answer.cookies[SESSION_COOKIE]}"}


def assert_guarded(answer: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, (answer.request.method, answer.request.url.path, answer.status_code, name)


# ---- the headers ----

async def test_every_answer_normal_or_error_carries_the_security_headers(api):
    async with httpx.AsyncClient(base_url=api) as http:
        normal = [await http.get("/"), await http.get("/static/app.js"), await http.get("/healthz"),
                  await http.get("/settings", headers=BEARER), await http.get("/clients-template.csv", headers=BEARER)]
        errors = [
            await http.get("/settings"),                                          # 401
            await http.get("/no-such-route", headers=BEARER),                     # 404
            await http.get("/static/no-such.js"),                                 # 404 from the static files
            await http.put("/healthz"),                                           # 405
            await http.post("/session", json={}),                                 # 422
            await http.post("/session", content=b"{not json", headers={"Content-Type": "application/json"}),
            await http.post("/session", json={"token": "wrong"}),                 # 401
            await http.get("/boom"),                                              # 500
        ]
        cookie = await signed_in(http)
        errors.append(await http.post("/imports", headers={**cookie, "Origin": "http://evil.example"}))  # 403, the guard's
    assert [a.status_code for a in normal] == [200] * 5
    assert [a.status_code for a in errors] == [401, 404, 404, 405, 422, 422, 401, 500, 403]
    for answer in normal + errors:
        assert_guarded(answer)
    for answer in errors:
        assert set(answer.json()) == {"code", "message"}, answer.text
    assert errors[-2].json()["code"] == "internal_error" and "a bug" not in errors[-2].text


async def test_the_docs_page_allows_only_its_own_inline_script_by_hash(api):
    async with httpx.AsyncClient(base_url=api) as http:
        docs = await http.get("/docs", headers=BEARER)
    policy = docs.headers["content-security-policy"]
    assert docs.status_code == 200 and "frame-ancestors 'none'" in policy and "'unsafe-inline'" not in policy.split(";")[1]
    assert re.search(r"script-src https://cdn\.jsdelivr\.net 'sha256-[A-Za-z0-9+/]{43}='", policy)
    assert docs.headers["x-frame-options"] == "DENY"


# ---- cross-site writes with the session cookie ----

async def test_a_write_with_the_session_cookie_from_another_origin_or_site_is_refused(api):
    port = api.rsplit(":", 1)[1]
    async with httpx.AsyncClient(base_url=api) as http:
        cookie = await signed_in(http)
        attacks = [
            {"Origin": f"http://127.0.0.1:{int(port) + 1}"},                      # another port: the same site
            {"Origin": f"http://localhost:{port}"},
            {"Origin": f"https://127.0.0.1:{port}"},
            {"Origin": "null"},                                                   # a sandboxed frame, a data: URL
            {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-site"},
            {"X-Requested-With": "clients-import", "Origin": "http://evil.example"},
            {},                                                                   # neither Origin nor the page's header
        ]
        for headers in attacks:
            for method, path in [("POST", "/imports"), ("DELETE", "/session"), ("POST", "/session"), ("PATCH", "/imports/x")]:
                answer = await http.request(method, path, headers={**headers, **cookie})
                assert (answer.status_code, answer.json()["code"]) == (403, "cross_site_request"), (method, path, headers)
        # The session was never touched.
        assert (await http.get("/session", headers=cookie)).status_code == 200


async def test_the_pages_own_writes_and_the_partners_bearer_calls_go_through(api):
    async with httpx.AsyncClient(base_url=api) as http:
        same = {"Origin": api}
        for headers in (same, {"X-Requested-With": "clients-import"}, {**same, "Sec-Fetch-Site": "same-origin"}):
            cookie = await signed_in(http)
            assert (await http.delete("/session", headers={**headers, **cookie})).status_code == 204, headers
            assert (await http.get("/session", headers=cookie)).status_code == 401
        # A partner's call is no browser's ambient credential: no Origin rule, even with a stray cookie.
        cookie = await signed_in(http)
        partner = await http.post("/imports", headers={**BEARER, **cookie, "Origin": "http://elsewhere.example"},
                                  files={"file": ("clients.xlsx", b"x")})
        assert (partner.status_code, partner.json()["code"]) == (415, "not_csv_name")  # past the guard, to the route
        # ...but a wrong bearer is refused outright: the cookie does not rescue it.
        wrong = await http.post("/imports", headers={"Authorization": "Bearer wrong", **cookie, "Origin": "http://elsewhere.example"},
                                files={"file": ("clients.csv", b"firstName,email\n")})
        assert (wrong.status_code, wrong.json()["code"]) == (401, "unauthorized")
        # Reads are not writes: no Origin needed.
        assert (await http.get("/settings", headers={**cookie, "Origin": "http://elsewhere.example"})).status_code == 200


# ---- sign-in guesses ----

async def guess(http: httpx.AsyncClient, address: str, token: str = "wrong") -> httpx.Response:
    return await http.post("/session", json={"token": token}, headers={"X-Forwarded-For": address})


async def test_sign_in_guesses_are_limited_per_address_and_the_right_token_works_elsewhere_and_later(api):
    async with httpx.AsyncClient(base_url=api) as http:
        for _ in range(ATTEMPTS):
            assert (await guess(http, "203.0.113.5")).status_code == 401
        limited = await guess(http, "203.0.113.5", TOKEN)  # even the right token: the token is not looked at
        assert (limited.status_code, limited.json()["code"]) == (429, "too_many_attempts")
        assert 1 <= int(limited.headers["retry-after"]) <= WINDOW_S + 1
        assert limited.headers["retry-after"] in limited.json()["message"]
        assert_guarded(limited)
        assert "set-cookie" not in limited.headers

        assert (await guess(http, "203.0.113.6", TOKEN)).status_code == 204  # another address
        http.cookies.clear()
        # A neighbour in the same IPv6 /64 is the same subscriber: one budget.
        for _ in range(ATTEMPTS):
            assert (await guess(http, "2001:db8:1:2::1")).status_code == 401
        assert (await guess(http, "2001:db8:1:2::ffff", TOKEN)).status_code == 429
        assert (await guess(http, "2001:db8:1:3::1", TOKEN)).status_code == 204
        http.cookies.clear()

        await asyncio.sleep(int(limited.headers["retry-after"]) + 0.1)
        assert (await guess(http, "203.0.113.5", TOKEN)).status_code == 204  # after the window


async def test_a_client_cannot_dodge_the_limit_by_sending_x_forwarded_for_itself(tmp_path):
    served, engine = await serve(tmp_path, trusted_proxies="")  # no proxy trusted: the connection's address counts
    async with served as url, httpx.AsyncClient(base_url=url) as http:
        for i in range(ATTEMPTS):
            assert (await guess(http, f"198.51.100.{i}")).status_code == 401
        assert (await guess(http, "198.51.100.200", TOKEN)).status_code == 429
    await engine.dispose()


# ---- the cookie over HTTPS ----

async def test_over_https_the_session_cookie_is_host_prefixed_and_the_plain_one_is_not_read(api):
    https = {"X-Forwarded-Proto": "https"}  # from the trusted loopback proxy, as a TLS front would send it
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await http.post("/session", json={"token": TOKEN}, headers=https)
        set_cookie = answer.headers["set-cookie"]
        name, _, value = set_cookie.split(";")[0].partition("=")
        attributes = [a.strip().lower() for a in set_cookie.split(";")[1:]]
        assert answer.status_code == 204 and name == f"__Host-{SESSION_COOKIE}"
        assert {"secure", "httponly", "path=/", "samesite=strict"} <= set(attributes)
        assert not any(a.startswith("domain") for a in attributes)

        assert (await http.get("/session", headers={**https, "Cookie": f"{name}={value}"})).status_code == 200
        # A cookie without the prefix (one a sibling subdomain could have set) signs nobody in over HTTPS.
        tossed = await http.get("/session", headers={**https, "Cookie": f"{SESSION_COOKIE}={value}"})
        assert tossed.status_code == 401
        # Plain HTTP (development on loopback) keeps the plain name, without Secure.
        plain = await http.post("/session", json={"token": TOKEN})
        assert plain.headers["set-cookie"].startswith(f"{SESSION_COOKIE}=") and "secure" not in plain.headers["set-cookie"].lower()

        out = await http.delete("/session", headers={**https, "Cookie": f"{name}={value}", "Origin": api.replace("http:", "https:")})
        assert out.status_code == 204 and out.headers["set-cookie"].startswith(f"__Host-{SESSION_COOKIE}=")
        assert (await http.get("/session", headers={**https, "Cookie": f"{name}={value}"})).status_code == 401


async def test_token_guesses_in_a_bearer_header_count_against_the_same_budget(api):
    async with httpx.AsyncClient(base_url=api) as http:
        for i in range(ATTEMPTS):
            guessed = await http.get("/settings", headers={"Authorization": f"Bearer guess-{i}", "X-Forwarded-For": "203.0.113.40"})
            assert guessed.status_code == 401
        limited = await http.get("/settings", headers={**BEARER, "X-Forwarded-For": "203.0.113.40"})
        assert (limited.status_code, limited.json()["code"]) == (429, "too_many_attempts") and limited.headers["retry-after"]
        assert (await guess(http, "203.0.113.40", TOKEN)).status_code == 429  # and the sign-in form too
        assert (await http.get("/settings", headers={**BEARER, "X-Forwarded-For": "203.0.113.41"})).status_code == 200


async def test_a_token_no_text_encoding_can_hold_is_refused_not_a_server_error(api):
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await http.post("/session", content=b'{"token": "\\ud800"}', headers={"Content-Type": "application/json",
                                                                                     "X-Forwarded-For": "203.0.113.50"})
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_parameters")


@pytest.mark.parametrize("who", ["\x1b[31mred", "tab\there", "next\x85line", "bidi\u202eevil"])
async def test_a_requester_name_with_a_control_or_format_character_is_refused_on_every_route(api, who):
    async with httpx.AsyncClient(base_url=api, headers={**BEARER, "X-Requested-By": who.encode()}) as http:
        for method, path, body in (("PUT", "/mappings/monthly", {"columns": {"E-mail": "email"}}), ("GET", "/imports", None)):
            answer = await http.request(method, path, json=body)
            assert (answer.status_code, answer.json()["code"]) == (422, "invalid_requested_by"), (path, answer.text)


async def test_a_search_with_a_c1_control_character_is_refused(api):
    async with httpx.AsyncClient(base_url=api, headers=BEARER) as http:
        answer = await http.get("/clients", params={"q": "\x85abc"})
        assert (answer.status_code, answer.json()["code"]) == (422, "invalid_parameters")


async def test_a_trailing_slash_is_not_redirected_to_the_host_the_request_names(api):
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await http.get("/imports/", headers={"Host": "evil.example"})
        assert "location" not in answer.headers
        assert (answer.status_code, answer.json()["code"]) == (404, "unknown_route")


def test_the_api_refuses_to_start_with_a_short_token(tmp_path):
    from faststream.kafka.fastapi import KafkaRouter

    from services.api.app import build_api
    from shared.db import create_engine

    with pytest.raises(RuntimeError, match="shorter than 32"):
        build_api(Settings(_env_file=None, api_token="guessable"), create_engine(f"sqlite+aiosqlite:///{tmp_path}/x.db"),
                  KafkaRouter("127.0.0.1:9", schema_url=None))
