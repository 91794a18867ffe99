"""The public event models: frozen, versioned, tolerant of added fields, strict where a typo would hurt."""

import base64
import json

import pytest
from pydantic import TypeAdapter, ValidationError

from shared.events import (
    AcceptedRow,
    Chunk,
    ClientValues,
    Event,
    ImportNotification,
    ImportOptions,
    ImportProgress,
    ImportRequest,
    Issue,
    JobAccepted,
    JobEvent,
    JobRefused,
    JobRepeated,
    JobStatus,
    Mode,
    Outcome,
    RejectedRow,
    RowResult,
    RowsAccepted,
    RowsRejected,
    RowsWritten,
    Source,
)

ISSUE = Issue(code="invalid_email", message="bad", field="email")
ROW = AcceptedRow(row=1, line=2, values=ClientValues(email="a@x.com", first_name="A"), original={"email": "a@x.com"})
EVENTS = [
    ImportRequest(file_name="a.csv", content="firstName,email\n"),
    JobAccepted(job_id="j", file_name="a.csv", source=Source.API, requested_by="ops", options=ImportOptions(),
                total=1, chunks=1),
    JobRefused(job_id="j", file_name="a.csv", source=Source.CLI, requested_by="ops", reason=ISSUE),
    JobRepeated(job_id="j"),
    Chunk(job_id="j", index=0, count=1, first_row=1, lines=(2,), csv="firstName,email\n", columns={"email": 1},
          repeats={3: ("email", 1)}),
    RowsAccepted(job_id="j", chunk=0, rows=(ROW,)),
    RowsRejected(job_id="j", chunk=0, rows=(RejectedRow(row=1, line=2, errors=(ISSUE,), original={}),)),
    RowsWritten(job_id="j", results=(RowResult(row=1, line=2, outcome=Outcome.CREATED, email="a@x.com"),)),
    ImportProgress(job_id="j", status=JobStatus.PROCESSING, processed=1, total=2),
    ImportNotification(job_id="j", file_name="a.csv", status=JobStatus.COMPLETED, total=1, created=1, updated=0,
                       unchanged=0, rejected=0),
]
ids = [type(e).__name__ for e in EVENTS]


@pytest.mark.parametrize("event", EVENTS, ids=ids)
def test_every_event_is_frozen(event: Event):
    with pytest.raises(ValidationError):
        event.job_id = "other" if hasattr(event, "job_id") else None  # type: ignore[misc]
    with pytest.raises(ValidationError):
        event.schema_version = 2  # type: ignore[misc]


@pytest.mark.parametrize("event", EVENTS, ids=ids)
def test_every_event_carries_schema_version_1_on_the_wire(event: Event):
    assert json.loads(event.model_dump_json())["schema_version"] == 1


@pytest.mark.parametrize("event", EVENTS, ids=ids)
def test_every_event_survives_a_round_trip_through_json(event: Event):
    assert type(event).model_validate_json(event.model_dump_json()) == event


@pytest.mark.parametrize("event", EVENTS, ids=ids)
def test_an_event_of_another_schema_version_is_not_read_as_this_one(event: Event):
    wire = json.loads(event.model_dump_json()) | {"schema_version": 2}
    with pytest.raises(ValidationError):
        type(event).model_validate(wire)


@pytest.mark.parametrize("event", EVENTS, ids=ids)
def test_fields_added_by_a_newer_writer_are_ignored(event: Event):
    wire = json.loads(event.model_dump_json()) | {"added_later": {"x": 1}}
    assert type(event).model_validate(wire) == event


@pytest.mark.parametrize("value", [ISSUE, ROW, ROW.values, ImportOptions()], ids=lambda v: type(v).__name__)
def test_the_values_inside_events_are_frozen_too(value):
    name = next(iter(type(value).model_fields))
    with pytest.raises(ValidationError):
        setattr(value, name, None)


def test_a_chunk_keeps_its_repeats_with_row_numbers_through_json():
    chunk = EVENTS[4]
    again = Chunk.model_validate_json(chunk.model_dump_json())
    assert again.repeats == {3: ("email", 1)}


@pytest.mark.parametrize("event", [e for e in EVENTS if isinstance(e, JobAccepted | JobRefused | JobRepeated)],
                         ids=lambda e: e.event)
def test_job_events_on_one_topic_are_told_apart_by_their_event_name(event):
    assert TypeAdapter(JobEvent).validate_json(event.model_dump_json()) == event


# --- import requests ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [{}, {"content": "a", "content_base64": base64.b64encode(b"a").decode()}, {"content": "", "content_base64": ""}],
    ids=["neither", "both", "both empty"],
)
def test_an_import_request_needs_exactly_one_of_content_and_content_base64(content: dict):
    with pytest.raises(ValidationError, match="exactly one of content and content_base64"):
        ImportRequest(file_name="a.csv", **content)


@pytest.mark.parametrize(
    "content, data",
    [({"content": "Zoë"}, "Zoë".encode()), ({"content": ""}, b""),
     ({"content_base64": base64.b64encode(b"\xff\xfeZ\x00").decode()}, b"\xff\xfeZ\x00")],
    ids=["text", "empty text", "bytes"],
)
def test_an_import_request_gives_the_files_bytes(content: dict, data: bytes):
    assert ImportRequest(file_name="a.csv", **content).file_bytes() == data


def test_content_base64_that_is_not_base64_is_an_error_saying_so():
    with pytest.raises(ValueError, match="base64"):
        ImportRequest(file_name="a.csv", content_base64="***").file_bytes()


@pytest.mark.parametrize("file_name", ["", "x" * 256])
def test_an_import_request_needs_a_file_name_of_1_to_255_characters(file_name: str):
    with pytest.raises(ValidationError):
        ImportRequest(file_name=file_name, content="x")


def test_an_import_request_defaults_to_an_upsert_from_the_topic():
    request = ImportRequest(file_name="a.csv", content="x")
    assert (request.options, request.source, request.requested_by, request.job_id) == (
        ImportOptions(mode=Mode.UPSERT, dry_run=False), Source.TOPIC, "unknown", None)


@pytest.mark.parametrize("options", [{"dryRun": True}, {"mode": "insert"}])
def test_misspelt_import_options_are_refused_rather_than_silently_ignored(options: dict):
    with pytest.raises(ValidationError):
        ImportRequest.model_validate({"file_name": "a.csv", "content": "x", "options": options})


@pytest.mark.parametrize("status, final", [(JobStatus.RECEIVED, False), (JobStatus.PROCESSING, False),
                                           (JobStatus.COMPLETED, True), (JobStatus.COMPLETED_WITH_ERRORS, True),
                                           (JobStatus.VALIDATED, True), (JobStatus.REJECTED, True),
                                           (JobStatus.FAILED, True)])
def test_only_received_and_processing_jobs_are_unfinished(status: JobStatus, final: bool):
    assert status.is_final is final


def test_an_undo_says_what_it_did_in_its_own_words():
    from shared.events import ImportNotification, Issue, JobKind, JobStatus

    note = ImportNotification(job_id="u", file_name="c.csv", status=JobStatus.COMPLETED_WITH_ERRORS, total=4, created=0,
                              updated=0, unchanged=1, rejected=0, kind=JobKind.UNDO, undo_of="j", deleted=1, restored=1,
                              conflicts=1)
    assert note.message == ("Undid the import of c.csv: 1 client deleted, 1 restored, 1 already as before, 1 changed "
                            "since and kept as it is (see conflicts.csv).")
    refused = note.model_copy(update={"status": JobStatus.REJECTED, "reason": Issue(code="already_undone", message="m.")})
    assert refused.message == "Could not undo the import of c.csv: m."
