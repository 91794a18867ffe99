"""The uploader takes a request from the topic only with a callback URL this deployment will call: any
other is refused whole (nothing imported, nobody called back), under an id that does not block a
corrected request."""

from services.uploader.app import Request, UploaderPorts, take_request
from shared import jobs
from shared.callbacks import CallbackPolicy
from shared.events import ImportOptions, ImportRequest, JobAccepted, JobRefused

from .uploader_fakes import memory_ports

ORIGIN = "clients.import.requests/0/42"
CSV = "firstName,email\nAnn,ann@example.com\n"


def ports(policy: CallbackPolicy = CallbackPolicy()) -> UploaderPorts:
    return memory_ports(policy=policy)


def request(url: str, **fields) -> Request:
    return Request(ImportRequest(file_name="c.csv", content=CSV, options=ImportOptions(callback_url=url), **fields), ORIGIN)


async def test_a_partners_request_with_a_local_callback_is_refused_under_an_id_of_its_own():
    [refused] = await take_request(request("https://169.254.169.254/latest/", idempotency_key="order-1"), ports())
    event = refused.event
    assert isinstance(event, JobRefused) and event.reason.code == "invalid_request"
    assert "callback_url must name a public host" in event.reason.message
    assert event.job_id == jobs.origin_job_id(ORIGIN)  # not the key's: a corrected request with it is a new job
    assert event.options.callback_url is None  # the refusal is not sent there either


async def test_our_own_signed_request_is_refused_under_the_id_its_caller_waits_on():
    job_id = "11111111-2222-3333-4444-555555555555"
    [refused] = await take_request(request("http://partner.example.com/", job_id=job_id, job_signature=jobs.sign("key", job_id)),
                                   ports())
    assert isinstance(refused.event, JobRefused) and refused.event.job_id == job_id
    assert "https" in refused.event.reason.message


async def test_an_allowed_destination_is_taken():
    policy = CallbackPolicy(allow_http=True, allowed=frozenset({"127.0.0.1"}))
    for url, chosen in (("https://hooks.partner.example.com/in", CallbackPolicy()), ("http://127.0.0.1:8080/in", policy)):
        published = await take_request(request(url), ports(chosen))
        assert isinstance(published[0].event, JobAccepted) and published[0].event.options.callback_url == url
