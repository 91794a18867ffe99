"""The front door's rules on their own: the sign-in budget (on a fake clock), the client key, the origin
comparison, and the guard over arbitrary headers (Hypothesis)."""

import asyncio
import json

import httpx
import pytest
from faststream.kafka.fastapi import KafkaRouter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.api.app import build_api
from services.api.guards import SECURITY_HEADERS, SignInLimiter, client_key, client_prefix, same_origin
from services.api.sessions import COOKIE, SECURE_COOKIE
from shared.db import create_engine, create_tables
from shared.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_is_per_address_and_comes_back_after_the_window():
    clock = Clock()
    limiter = SignInLimiter(attempts=3, window_s=60, addresses=100, clock=clock)
    for _ in range(3):
        assert limiter.wait_s("a") == 0
        limiter.failed("a")
    assert limiter.wait_s("a") == 60 and limiter.wait_s("b") == 0
    clock.now += 59.2
    assert limiter.wait_s("a") == 1  # rounded up: Retry-After never says 0 while refusing
    clock.now += 0.8
    assert limiter.wait_s("a") == 0 and limiter.windows == {}


def test_memory_is_bounded_and_a_flood_of_addresses_slows_only_the_networks_it_comes_from():
    clock = Clock()
    limiter = SignInLimiter(attempts=2, window_s=60, addresses=100, clock=clock)
    for i in range(10_000):  # a flood of addresses from the 10.0.0.0/16 networks
        host = f"10.0.{i // 256}.{i % 256}"
        limiter.failed(client_key(host), client_prefix(host))
    assert len(limiter.windows) <= 100 + 40  # the addresses tracked, and the /24 networks the rest share
    assert limiter.wait_s("10.0.30.7", "10.0.30.0/24") > 0  # an untracked address of a flooding network
    assert limiter.wait_s("192.0.2.1", "192.0.2.0/24") == 0  # another network is not locked out
    assert limiter.wait_s("10.0.0.0", "10.0.0.0/24") == 0  # a tracked address keeps its own count: one of two
    limiter.failed("10.0.0.0", "10.0.0.0/24")
    assert limiter.wait_s("10.0.0.0", "10.0.0.0/24") > 0
    clock.now += 60
    assert limiter.wait_s("10.0.30.7", "10.0.30.0/24") == 0 and limiter.windows == {}  # expired windows are dropped


def test_when_the_networks_are_full_too_new_ones_share_one_last_window():
    clock = Clock()
    limiter = SignInLimiter(attempts=2, window_s=60, addresses=3, clock=clock)
    for i in range(20):
        limiter.failed(f"addr{i}", f"net{i}")
    assert len(limiter.windows) == 3 + 3 + 1
    assert limiter.wait_s("new", "new-net") > 0


def test_expired_windows_are_dropped_oldest_first_so_room_comes_back():
    clock = Clock()
    limiter = SignInLimiter(attempts=5, window_s=10, addresses=3, clock=clock)
    for key in "abc":
        limiter.failed(key)
        clock.now += 4
    # a started at 1000, b at 1004, c at 1008; now 1012: a has expired, b and c have not.
    limiter.failed("d")
    assert list(limiter.windows) == ["b", "c", "d"]


def test_the_client_key_is_the_ipv4_address_or_the_ipv6_64():
    assert client_key("203.0.113.9") == "203.0.113.9"
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2::ffff") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_key(None) == "unknown" and client_key("x" * 500) == "x" * 100
    assert client_prefix("203.0.113.9") == "203.0.113.0/24" and client_prefix("2001:db8:1:2::1") == "2001:db8:1::/48"


@pytest.mark.parametrize(("origin", "scheme", "host", "same"), [
    ("http://127.0.0.1:8000", "http", "127.0.0.1:8000", True),
    ("https://imports.example.com", "https", "imports.example.com", True),
    ("https://imports.example.com", "https", "imports.example.com:443", True),
    ("https://Imports.Example.com", "https", "imports.example.com", True),
    ("http://[::1]:8000", "http", "[::1]:8000", True),
    ("http://127.0.0.1:8001", "http", "127.0.0.1:8000", False),  # another port: the same site, not the same origin
    ("https://evil.example.com", "https", "imports.example.com", False),  # a sibling subdomain
    ("http://imports.example.com", "https", "imports.example.com", False),
    ("null", "http", "127.0.0.1:8000", False),
    ("http://127.0.0.1:8000/", "http", "127.0.0.1:8000", False),
    ("http://user@127.0.0.1:8000", "http", "127.0.0.1:8000", False),
    ("http://127.0.0.1:99999", "http", "127.0.0.1:99999", False),
    ("", "http", "", False),
])
def test_same_origin_is_scheme_host_and_port(origin, scheme, host, same):
    assert same_origin(origin, scheme, host) is same


@given(st.text(max_size=80), st.sampled_from(["http", "https"]), st.text(max_size=80))
def test_same_origin_never_fails_and_never_matches_a_stranger(origin, scheme, host):
    if same_origin(origin, scheme, host):
        assert origin.lower().removesuffix(":443").removesuffix(":80") == f"{scheme}://{host}".lower().removesuffix(":443").removesuffix(":80")


# ---- the guard in front of the real app, over arbitrary requests ----

TOKEN = "unit-token-" + "x" * 32


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('guards') / 'guards.db'}")
    asyncio.run(create_tables(engine))
    return build_api(Settings(_env_file=None, api_token=TOKEN), engine, KafkaRouter("127.0.0.1:9", schema_url=None))


header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=60)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]),
    path=st.sampled_from(["/imports", "/session", "/clients", "/imports/x", "/", "/nowhere"]),
    origin=st.one_of(st.none(), header_text, st.sampled_from(["http://testserver", "http://testserver:81", "null"])),
    fetch_site=st.one_of(st.none(), st.sampled_from(["same-origin", "same-site", "cross-site", "none"]), header_text),
    page_header=st.one_of(st.none(), header_text),
    cookie_name=st.one_of(st.none(), st.sampled_from([COOKIE, SECURE_COOKIE])),
    cookie_value=header_text,
    authorization=st.one_of(st.none(), header_text, st.just("Bearer wrong")),
)
def test_any_request_gets_an_answer_with_the_headers_and_a_cookie_write_from_elsewhere_is_refused(
    app, method, path, origin, fetch_site, page_header, cookie_name, cookie_value, authorization
):
    headers = {"origin": origin, "sec-fetch-site": fetch_site, "x-requested-with": page_header,
               "authorization": authorization, "cookie": f"{cookie_name}={cookie_value}" if cookie_name else None}
    headers = {k: v.encode("latin-1") for k, v in headers.items() if v is not None}  # any byte a client may send

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as http:
            return await http.request(method, path, headers=headers)

    answer = asyncio.run(call())
    assert answer.status_code < 500, answer.text
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers[name] == value
    if answer.status_code >= 400:
        assert set(answer.json()) == {"code", "message"}

    sent_cookie = cookie_name is not None and answer.request.headers.get("cookie", "").startswith(cookie_name + "=")
    bearer = (authorization or "").lower().startswith("bearer ")
    from_elsewhere = (fetch_site in ("same-site", "cross-site")
                      or (origin is not None and origin != "http://testserver")
                      or (origin is None and not page_header))
    refused = answer.status_code == 403 and answer.json()["code"] == "cross_site_request"
    assert refused == (method not in ("GET", "OPTIONS") and sent_cookie and not bearer and from_elsewhere), answer.text


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=200), st.builds(lambda t: json.dumps({"token": t}).encode(), st.text(max_size=50))),
       content_type=st.sampled_from(["application/json", "text/plain", "multipart/form-data", ""]))
def test_any_sign_in_body_gets_a_clear_refusal_and_guessing_ends_in_429(app, body, content_type):
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://testserver") as http:
            return await http.post("/session", content=body, headers={"content-type": content_type} if content_type else {})

    answer = asyncio.run(call())
    assert 400 <= answer.status_code < 500 and set(answer.json()) == {"code", "message"}, answer.text
    if answer.status_code == 429:
        assert int(answer.headers["retry-after"]) >= 1
