"""From an import request to the uploader's events: the job first, then its chunks."""

import base64
import json
import uuid

import pytest
from pydantic import ValidationError

from services.uploader.intake import plan_job, refuse_malformed, refuse_reused, refuse_unsigned
from shared import jobs, topics
from shared.events import Chunk, ImportOptions, ImportRequest, JobAccepted, JobRefused, Mode, Source
from shared.reading import Limits
from tests.catalogue import XLSX, text

CLEAN = text("firstName,email,phone", *(f"C{i},c{i}@x.com,555" for i in range(1, 6)))


def request(data: bytes = CLEAN, **fields) -> ImportRequest:
    return ImportRequest(file_name="clients.csv", content_base64=base64.b64encode(data).decode(), **fields)


def test_an_accepted_file_publishes_the_job_first_then_its_chunks_all_keyed_by_job():
    options = ImportOptions(mode=Mode.CREATE_ONLY)

    publications = plan_job(request(options=options, requested_by="ops"), "job-1", Limits(), 2)

    job, *chunks = publications
    assert job.topic == topics.JOBS and isinstance(job.event, JobAccepted)
    assert (job.event.total, job.event.chunks) == (5, 3)
    assert (job.event.file_name, job.event.requested_by, job.event.options) == ("clients.csv", "ops", options)
    assert [w.code for w in job.event.warnings] == ["unknown_columns"]
    assert [p.topic for p in chunks] == [topics.CHUNKS] * 3
    assert [p.event.index for p in chunks] == [0, 1, 2]
    assert all(isinstance(p.event, Chunk) and p.event.options == options for p in chunks)
    assert {p.key for p in publications} == {"job-1"}


def test_a_rejected_file_publishes_only_the_refusal_with_its_reason():
    publications = plan_job(request(XLSX), "job-1", Limits(), 500)

    assert len(publications) == 1
    (job,) = publications
    assert job.topic == topics.JOBS and job.key == "job-1"
    assert isinstance(job.event, JobRefused)
    assert job.event.reason.code == "excel_workbook"


def test_the_limits_given_are_the_ones_applied():
    (job,) = plan_job(request(), "job-1", Limits(max_records=4), 500)
    assert job.event.reason.code == "too_many_records"


def test_text_content_is_imported_as_utf8():
    publications = plan_job(ImportRequest(file_name="a.csv", content="firstName,email\nZoë,zoe@x.com\n"), "j", Limits(), 9)
    assert publications[0].event.total == 1
    assert "Zoë" in publications[1].event.csv


def test_content_that_is_not_base64_is_refused_as_an_invalid_request():
    bad = ImportRequest(file_name="a.csv", content_base64="not base64!!")

    (job,) = plan_job(bad, "job-1", Limits(), 500)

    assert job.event.reason.code == "invalid_request"
    assert "base64" in job.event.reason.message


# --- job ids -----------------------------------------------------------------------------------------

SECRET = "our-signing-key"
ORIGIN = f"{topics.REQUESTS}/2/7"


def test_the_job_id_given_and_signed_by_our_api_is_kept():
    signed = request(job_id="job-from-api", job_signature=jobs.sign(SECRET, "job-from-api"), idempotency_key="k")
    assert jobs.job_id_for(signed, ORIGIN, SECRET) == "job-from-api"


@pytest.mark.parametrize("signature", [None, "", "0" * 64, jobs.sign("another key", "job-from-api"),
                                       jobs.sign(SECRET, "another-job")])
def test_a_job_id_not_signed_with_our_key_is_not_honoured(signature):
    forged = request(job_id="job-from-api", job_signature=signature)
    assert jobs.job_id_for(forged, ORIGIN, SECRET) is None
    assert jobs.job_id_for(forged, ORIGIN, None) is None


def test_the_same_idempotency_key_from_the_same_requester_is_the_same_job():
    first = jobs.job_id_for(request(idempotency_key="k-1", requested_by="crm"), f"{topics.REQUESTS}/0/1", SECRET)
    again = jobs.job_id_for(request(idempotency_key="k-1", requested_by="crm"), f"{topics.REQUESTS}/3/2", SECRET)
    other_key = jobs.job_id_for(request(idempotency_key="k-2", requested_by="crm"), ORIGIN, SECRET)
    other_requester = jobs.job_id_for(request(idempotency_key="k-1", requested_by="erp"), ORIGIN, SECRET)

    assert first == again
    assert len({first, other_key, other_requester}) == 3


def test_a_request_on_the_topic_cannot_reach_a_job_the_api_took_with_the_same_key():
    on_topic = jobs.job_id_for(request(idempotency_key="k-1", requested_by="api"), ORIGIN, SECRET)
    assert on_topic != jobs.idempotent_job_id("api", "api", "k-1")


def test_a_redelivered_record_without_a_key_is_the_same_job():
    assert jobs.job_id_for(request(), ORIGIN, SECRET) == jobs.job_id_for(request(), ORIGIN, SECRET)
    assert jobs.job_id_for(request(), ORIGIN, SECRET) != jobs.job_id_for(request(), f"{topics.REQUESTS}/2/8", SECRET)
    assert uuid.UUID(jobs.job_id_for(request(), ORIGIN, SECRET))


def test_a_request_naming_a_job_id_it_may_not_is_refused_under_an_id_of_its_own():
    forged = request(job_id="victim-job", requested_by="mallory")

    (publication,) = refuse_unsigned(forged, jobs.origin_job_id(ORIGIN))

    assert publication.event.job_id == jobs.origin_job_id(ORIGIN) != "victim-job"
    assert publication.event.reason.code == "job_id_not_allowed"
    assert "leave job_id out" in publication.event.reason.message


# --- malformed requests ------------------------------------------------------------------------------


def validation_error(raw: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        ImportRequest.model_validate_json(raw)
    return caught.value


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", json.dumps({"file_name": "a.csv"}).encode()])
def test_a_malformed_request_that_cannot_be_addressed_gets_no_notification(raw: bytes):
    assert refuse_malformed(raw, ValueError("bad")) == []


def test_a_malformed_request_with_an_idempotency_key_is_refused_under_an_id_of_its_own_saying_its_key():
    raw = json.dumps({"idempotency_key": "k-9", "requested_by": "crm", "file_name": "a.csv"}).encode()

    (publication,) = refuse_malformed(raw, validation_error(raw), ORIGIN)

    event = publication.event
    assert isinstance(event, JobRefused) and publication.topic == topics.JOBS
    # Not the job a valid request with that key would start: a malformed request cannot take it ahead.
    assert event.job_id == jobs.origin_job_id(ORIGIN)
    assert event.job_id != jobs.job_id_for(request(idempotency_key="k-9", requested_by="crm"), ORIGIN, SECRET)
    assert publication.key == event.job_id and event.idempotency_key == "k-9"
    assert (event.file_name, event.requested_by, event.source) == ("a.csv", "crm", Source.TOPIC)
    assert event.reason.code == "invalid_request"
    assert "content" in event.reason.message and "\n" not in event.reason.message


@pytest.mark.parametrize(("extra", "said"), [
    ({}, "the request: give exactly one of content and content_base64"),
    ({"content": "x", "options": {"mode": 7}}, "options.mode: Input should be 'upsert', 'create_only' or 'update_only'"),
])
def test_a_malformed_requests_refusal_says_what_is_wrong_in_plain_words_not_pydantics_dump(extra, said):
    raw = json.dumps({"idempotency_key": "k-9", "requested_by": "crm", "file_name": "a.csv", **extra}).encode()

    (publication,) = refuse_malformed(raw, validation_error(raw), ORIGIN)

    message = publication.event.reason.message
    assert message == f"The import request is not valid: {said}"
    assert not any(noise in message for noise in ("pydantic", "input_value", "type=", "validation error for"))


def test_a_malformed_request_naming_a_job_id_is_never_refused_under_that_id():
    raw = json.dumps({"job_id": "job-7", "requested_by": "mallory", "content": "x"}).encode()

    (publication,) = refuse_malformed(raw, validation_error(raw), ORIGIN)

    assert publication.event.job_id == jobs.origin_job_id(ORIGIN) != "job-7"
    assert publication.event.file_name == "(unnamed)"


@pytest.mark.parametrize("raw", [b"[" * 5000, b'{"a":' * 5000, b"\xff\xfe{", b'{"file_name": "\\ud800"}',
                                 b'{"file_name": 1e999999}', b'{"requested_by": {"x": [1, 2]}, "file_name": 5}'])
def test_no_malformed_request_makes_the_refusal_raise(raw: bytes):
    publications = refuse_malformed(raw, ValueError("bad"), ORIGIN)
    assert all(isinstance(p.event, JobRefused) for p in publications)


def test_a_job_id_is_bound_to_the_content_it_was_first_taken_for():
    first = request(idempotency_key="k")
    assert jobs.content_digest(first) == jobs.content_digest(request(idempotency_key="k", requested_by="someone else"))
    assert jobs.content_digest(first) != jobs.content_digest(request(CLEAN + b"Eve,eve@x.com,1\n", idempotency_key="k"))
    assert jobs.content_digest(first) != jobs.content_digest(request(idempotency_key="k", options=ImportOptions(dry_run=True)))

    (publication,) = refuse_reused(first, jobs.origin_job_id(ORIGIN))
    assert publication.event.reason.code == "idempotency_key_reused"
    assert publication.event.job_id == jobs.origin_job_id(ORIGIN)


def test_an_undo_is_a_job_of_its_own_with_one_share_for_each_partition_on_that_partition():
    from services.uploader.intake import plan_undo_job
    from shared import topics
    from shared.events import ImportRequest, Issue, JobKind

    request = ImportRequest(idempotency_key="k", requested_by="partner", undo_of="import-1")
    job, *shares = plan_undo_job(request, "undo-1", None, "clients.csv", 7, partitions=3)

    assert (job.topic, job.event.event, job.event.kind, job.event.undo_of, job.event.total) == (
        topics.JOBS, "job.accepted", JobKind.UNDO, "import-1", 7)
    assert job.event.file_name == "clients.csv"
    assert [(s.topic, s.partition, s.event.partition, s.event.partitions, s.event.rows) for s in shares] == [
        (topics.ROWS_ACCEPTED, p, p, 3, ()) for p in range(3)]
    assert all(s.event.job_id == "undo-1" and s.event.undo_of == "import-1" for s in shares)

    (refused,) = plan_undo_job(request, "undo-2", Issue(code="already_undone", message="m"), "clients.csv", 7, 3)
    assert (refused.event.event, refused.event.reason.code, refused.event.kind) == ("job.rejected", "already_undone",
                                                                                   JobKind.UNDO)


def test_an_undo_request_carries_no_file_and_an_import_request_needs_one():
    import pytest

    from shared.events import ImportRequest

    with pytest.raises(ValueError, match="carries no file"):
        ImportRequest(undo_of="import-1", content="firstName,email\n")
    with pytest.raises(ValueError, match="file_name is required"):
        ImportRequest(content="firstName,email\n")


def test_an_undo_request_takes_no_import_options():
    # Finding 2: an undo with dry_run=true deleted for real and reported a dry run.
    import pytest

    from shared.events import ImportRequest

    for options in ({"dry_run": True}, {"mode": "create_only"}, {"column_map": {"Mail": "email"}},
                    {"mapping": "crm"}):
        with pytest.raises(ValueError, match="takes no options but callback_url"):
            ImportRequest.model_validate({"undo_of": "import-1", "options": options})
    undo = ImportRequest.model_validate({"undo_of": "import-1", "options": {"callback_url": "https://hooks.example/x"}})
    assert undo.options.callback_url == "https://hooks.example/x"
    # What our API publishes (every option written out, at its default) reads back.
    assert ImportRequest.model_validate_json(undo.model_dump_json()) == undo
