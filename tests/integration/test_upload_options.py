"""POST /imports's options, on each database backend: what a form says is what is imported, or a 422."""

import uuid

import pytest

from shared.events import ImportRequest
from shared.settings import Settings

from .in_process_api import api_client

TOKEN = f"options-{uuid.uuid4().hex}"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def api(db):
    published: list[ImportRequest] = []
    async with api_client(Settings(_env_file=None, api_token=TOKEN), db, published) as client:
        yield client, published


def upload(http, **fields):
    files = {"file": ("people.csv", f"firstName,email\nAnn,ann-{uuid.uuid4().hex[:8]}@x.com\n".encode(), "text/csv")}
    return http.post("/imports", headers=BEARER, files=files, data=fields)


@pytest.mark.parametrize("word", ["maybe", "ture", "2", "y e s"])
async def test_a_dry_run_word_we_do_not_know_is_refused_and_nothing_is_imported(api, word):
    http, published = api
    answer = await upload(http, dry_run=word)
    assert (answer.status_code, answer.json()["code"]) == (422, "invalid_options"), answer.text
    assert "dry_run" in answer.json()["message"]
    assert published == []


@pytest.mark.parametrize(("word", "dry_run"), [("true", True), ("YES", True), ("1", True), (" on ", True),
                                               ("false", False), ("0", False), ("off", False), ("", False)])
async def test_the_dry_run_words_we_know_say_what_is_imported(api, word, dry_run):
    http, published = api
    answer = await upload(http, dry_run=word)
    assert answer.status_code == 202, answer.text
    assert [request.options.dry_run for request in published] == [dry_run]


async def test_a_key_used_again_for_another_file_is_refused_before_any_uploader_took_the_first(api):
    """No uploader runs here: the first upload is only recorded. Before, the second got 202 and the first's
    job id, and its file was never imported."""
    http, published = api
    key = {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}
    files = lambda text: {"file": ("people.csv", text.encode(), "text/csv")}  # noqa: E731

    monday = await http.post("/imports", headers={**BEARER, **key}, files=files("firstName,email\nMon,mon@x.com\n"))
    again = await http.post("/imports", headers={**BEARER, **key}, files=files("firstName,email\nMon,mon@x.com\n"))
    tuesday = await http.post("/imports", headers={**BEARER, **key}, files=files("firstName,email\nTue,tue@x.com\n"))

    assert monday.status_code == again.status_code == 202 and again.json()["job_id"] == monday.json()["job_id"]
    assert (tuesday.status_code, tuesday.json()["code"]) == (409, "idempotency_key_reused")
    assert len(published) == 2  # the first, and its repeat; never Tuesday's under Monday's job


async def test_an_upload_the_broker_did_not_take_is_a_503_and_leaves_no_job_behind(db):
    from aiokafka.errors import KafkaConnectionError
    from sqlalchemy import func, select

    from shared.tables import import_jobs

    published: list[ImportRequest] = []
    async with api_client(Settings(_env_file=None, api_token=TOKEN), db, published,
                          [KafkaConnectionError("broker away")]) as http:
        async with db.connect() as conn:
            before = await conn.scalar(select(func.count()).select_from(import_jobs))
        refused = await upload(http)
        async with db.connect() as conn:
            after = await conn.scalar(select(func.count()).select_from(import_jobs))
        taken = await upload(http)

    assert (refused.status_code, refused.json()["code"]) == (503, "broker_unavailable")
    assert "nothing was started" in refused.json()["message"] and after == before
    assert taken.status_code == 202 and len(published) == 1
