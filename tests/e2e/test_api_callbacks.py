"""`callback_url` at the API's front door: a local, private or credentialed destination, or plain http where
it is not allowed, is refused with 422 and the reason before anything is imported; no text makes it answer 500."""

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from shared.callbacks import CallbackPolicy, CallbackRefused, check_url
from shared.tables import import_jobs

from .test_api import poll, upload
from .test_restarts import Api

REFUSED = {
    "https://169.254.169.254/latest/meta-data/": "public host",
    "https://10.0.0.1/hook": "public host",
    "https://[::1]/hook": "public host",
    "https://2130706433/hook": "public host",
    "https://0x7f.1/hook": "public host",
    "https://[::ffff:169.254.169.254]/": "public host",
    "https://localhost/hook": "public host",
    "https://metadata.google.internal/": "public host",
    "https://user:pass@partner.example.com/hook": "credentials",
    "https://partner.example.com@127.0.0.1/": "credentials",
    "ftp://partner.example.com/": "https",
    "https://" + "a" * 2000 + ".com/": "longer than 2000",
}


async def test_a_local_private_or_credentialed_callback_is_refused_with_the_reason(api, engine):
    async with httpx.AsyncClient(base_url=api) as http:
        for url, reason in REFUSED.items():
            answer = await upload(http, "firstName,email\nA,a@cb.example.com\n", callback_url=url)
            assert answer.status_code == 422, url
            assert answer.json()["code"] == "invalid_options" and reason in answer.json()["message"], (url, answer.json())
    async with engine.connect() as conn:
        stored = set(await conn.scalars(select(import_jobs.c.callback_url).where(import_jobs.c.callback_url.is_not(None))))
    assert not stored & set(REFUSED)


async def test_plain_http_and_the_loopback_receiver_are_refused_by_an_api_without_the_allowances(api, settings, engine):
    """The session allows http and 127.0.0.1 for the tests' receivers; an API run without those settings
    (the defaults) refuses both, and the session's takes a plain http callback."""
    strict = settings.model_copy(update={"webhook_allow_http": False, "webhook_allowed_destinations": ""})
    async with Api(strict, engine) as http:
        answers = [await upload(http, "firstName,email\nA,a@cb2.example.com\n", callback_url=url)
                   for url in ("http://partner.example.com/hook", "https://127.0.0.1:9/hook")]
    assert [(a.status_code, a.json()["code"]) for a in answers] == [(422, "invalid_options")] * 2
    assert "https" in answers[0].json()["message"] and "public host" in answers[1].json()["message"]
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await upload(http, "firstName,email\nA,a@cb2.example.com\n", callback_url="http://hooks.partner.invalid/in")
        assert answer.status_code == 202
        job = await poll(http, answer.json()["status_url"])
    assert job["status"] == "completed"


@settings(max_examples=300, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(url=st.one_of(
    st.text(min_size=1, max_size=200),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=80).map(lambda s: "https://" + s),
    st.ip_addresses().map(lambda a: f"https://[{a}]/" if a.version == 6 else f"https://{a}/"),
    st.from_regex(r"https?://[a-z0-9.:@\[\]%-]{1,40}(/[a-z]{0,5})?", fullmatch=True),
))
async def test_no_callback_url_makes_the_api_answer_500(api, settings, url):
    """Any text: refused with 422 and its reason, or accepted by the rule (then the unknown mode refuses the
    request, so the property test imports nothing and calls nobody back)."""
    policy = CallbackPolicy.of(settings)
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await upload(http, "firstName,email\nA,a@cb3.example.com\n", callback_url=url, mode="no-such-mode")
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_options"
    message = answer.json()["message"]
    if url.isascii() and url.isprintable():  # what a form field carries unchanged
        try:
            check_url(url, policy)
        except CallbackRefused:
            assert message.startswith("callback_url"), (url, message)
