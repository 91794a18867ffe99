"""A retry's plan: which rows may be retried, how each maps back to its original row, what reaches the pipeline."""

import base64
import csv
import io
import json

from services.uploader.retrying import plan_retry
from shared import retries, topics
from shared.events import Chunk, ImportOptions, ImportRequest, Issue, JobAccepted, JobRefused, JobStatus, Mode
from shared.reading import Limits
from shared.rules import validate_chunk

HEADER = ["First Name", "Mail", "lastName"]


def original(**changes) -> retries.Original:
    """An import of 6 rows read with a column map (Mail -> email): rows 2, 4 and 5 rejected, 5 fixed since."""
    rejected = {
        2: retries.RejectedRow(3, {"First Name": "", "Mail": "bo@x.com", "lastName": "Ray"},
                               ({"field": "firstName", "code": "missing_first_name", "message": "empty"},)),
        4: retries.RejectedRow(6, {"First Name": "Cy", "Mail": "cy@", "lastName": "Lu"},
                               ({"field": "email", "code": "invalid_email", "message": "bad"},)),
        5: retries.RejectedRow(7, {"First Name": "Di", "Mail": "di@", "lastName": ""}, ()),
    }
    mapping = {"name": None, "version": None, "columns": {"Mail": "email"},
               "fields": {"firstName": "First Name", "email": "Mail", "lastName": "lastName"}}
    base = dict(job_id="orig-1", file_name="people.csv", status=JobStatus.COMPLETED_WITH_ERRORS, requested_by="acme",
                dry_run=False, mode=Mode.CREATE_ONLY, total=6, mapping=mapping, rejected=rejected,
                fixed=frozenset({5}))
    return retries.Original(**{**base, **changes})


def test_only_rows_rejected_and_not_fixed_since_may_be_retried():
    assert original().retryable == {2, 4}
    assert retries.refusal(original(), "acme", trusted=False) is None


def test_a_retry_that_cannot_start_says_why_with_a_code_of_its_own():
    def code(found, requested_by="acme", trusted=False):
        issue = retries.refusal(found, requested_by, trusted)
        return issue.code if issue else None

    assert code(None) == "unknown_import"
    assert code(original(dry_run=True)) == "not_retryable"
    assert code(original(status=JobStatus.REJECTED)) == "not_retryable"
    assert code(original(status=JobStatus.PROCESSING)) == "import_running"
    assert code(original(fixed=frozenset({2, 4, 5}))) == "nothing_to_retry"
    assert code(original(), requested_by="someone-else") == "retry_not_allowed"
    assert code(original(), requested_by="someone-else", trusted=True) is None
    # Signed = trusted: a topic request naming the requester of an import that came by our API is not our API.
    assert code(original(source="api", requested_by="api"), requested_by="api") == "retry_not_allowed"
    assert code(original(source="api", requested_by="api"), requested_by="api", trusted=True) is None
    assert code(original(undone_by="undo-1"), trusted=True) == "not_retryable"


def test_a_retry_of_an_undone_import_is_refused_saying_it_was_undone():
    issue = retries.refusal(original(undone_by="undo-1"), "acme", trusted=True)

    assert issue.code == "not_retryable" and "undone (by job undo-1)" in issue.message


def test_a_retry_carrying_options_it_does_not_take_is_refused_on_the_topic_and_none_is_written():
    text = "Mail,row\r\ncy@x.com,4\r\n"
    for options, named in ((ImportOptions(dry_run=True), "dry_run"), (ImportOptions(mode=Mode.UPSERT), "mode"),
                           (ImportOptions(column_map={"Mail": "email"}), "column_map"),
                           (ImportOptions(mapping="crm"), "mapping")):
        (job,) = plan(text, options=options)
        assert isinstance(job.event, JobRefused) and job.event.reason.code == "invalid_options", options
        assert named in job.event.reason.message

    same_mode, _ = plan(text, options=ImportOptions(mode=Mode.CREATE_ONLY))  # the original's own: no change
    assert isinstance(same_mode.event, JobAccepted)


def json_body(*rows, **rest) -> bytes:
    return json.dumps({"rows": [{"row": n, "values": v} for n, v in rows], **rest}).encode()


def test_json_rows_that_no_csv_holds_are_refused_with_a_code_not_a_crash():
    def code(raw: bytes) -> str:
        taken = retries.json_rows(raw, original(), Limits())
        return taken.code if isinstance(taken, Issue) else "taken"

    assert code(b'{"rows": [{"row": 2, "values": {"Mail": "\\ud800"}}]}') == "invalid_rows"
    assert code(b'{"rows": [{"row": 2, "values": {"\\udfff": "x"}}]}') == "invalid_rows"
    assert code(b'{"rows": [{"row": 2, "values": {"Mail": "a\\u0000@x.com"}}]}') == "invalid_rows"
    assert code(json_body((2, {"Mail": "bo@x.com"})).decode().encode("utf-16")) == "invalid_json"
    assert code(b'{"rows": [{"row": 2, "values": {"Mail": "\xff"}}]}') == "invalid_json"
    assert code(json_body((2, {"Mail": "a\tb"}))) == "taken"  # a tab is text a CSV holds


def test_a_json_key_naming_no_column_is_carried_so_the_uploader_warns_of_it_as_for_a_csv():
    made = retries.rows_csv(original(), [(4, {"Mail": "cy@x.com", "Notes": "vip"})])
    assert made.splitlines()[0] == "First Name,Mail,lastName,Notes,row"

    (job, _) = plan(made)
    assert [w.code for w in job.event.warnings] == ["unknown_columns"] and "Notes" in job.event.warnings[0].message
    assert retries.unknown_keys(original(), [(4, {"Mail": "x", "Notes": "y", "errors": "z"})]) == ["Notes"]


def test_an_original_column_named_row_takes_a_json_value_and_the_row_number_stays_last():
    found = original(rejected={4: retries.RejectedRow(5, {"row": "r4", "Mail": "cy@"})}, mapping=None, fixed=frozenset())
    taken = retries.json_rows(json_body((4, {"row": "r-new", "Mail": "cy@x.com"})), found, Limits())

    rows, _ = taken
    made = retries.rows_csv(found, rows)
    assert made.splitlines() == ["row,Mail,row", "r-new,cy@x.com,4"]
    assert retries.merged(found, 4, ["row", "Mail", "row"], ["r-new", "cy@x.com", "4"]) == ["r-new", "cy@x.com"]


def test_each_column_name_is_resolved_once_however_many_rows_name_it(monkeypatch):
    seen: list[str] = []
    real = retries.target_of
    monkeypatch.setattr(retries, "target_of", lambda name: seen.append(name) or real(name))
    found = original()
    rows = [(4, {"email": f"r{n}@x.com", "Notes": "x", "Other": "y"}) for n in range(300)]

    retries.rows_csv(found, rows)
    assert sorted(seen) == ["Notes", "Other", "email"], "one resolution per name, not per row"


def test_rows_not_rejected_are_answered_one_by_one_and_the_rest_goes_on():
    answered = retries.answers(original(), [2, 3, 5, 4], original().retryable)

    assert set(answered) == {3, 5}
    assert {a.code for a in answered.values()} == {"not_rejected"}
    assert "not rejected in the import" in answered[3].message
    assert "earlier retry" in answered[5].message


def test_the_row_column_names_rows_of_the_original_each_once_or_the_retry_is_refused():
    header = ["Mail", "row"]
    assert retries.row_numbers(header, [["a", "4"], ["b", " 2 "]], 6) == [4, 2]
    for bad in (["x", "0"], ["x", "7"], ["x", "two"], ["x", ""], ["x", "²"], ["x", "-1"]):
        refused = retries.row_numbers(header, [bad], 6)
        assert refused.code == "invalid_retry_rows", bad
    twice = retries.row_numbers(header, [["a", "4"], ["b", "4"]], 6)
    assert twice.code == "invalid_retry_rows" and "row 4 is given twice" in twice.message
    assert retries.row_numbers(["Mail"], [["a"]], 6).code == "missing_row_column"


def test_errors_csv_as_edited_maps_back_cell_by_cell_the_report_columns_are_no_values():
    header = [*HEADER, "row", "line", "errors"]
    cells = ["Bo", "bo@x.com", "Ray", "2", "3", "firstName: empty [missing_first_name]"]

    assert retries.merged(original(), 2, header, cells) == ["Bo", "bo@x.com", "Ray"]


def test_a_partial_retry_keeps_the_original_values_it_does_not_give_and_fields_name_their_column():
    # `email` is the field the original read from its column "Mail"; "first name" matches "First Name".
    assert retries.merged(original(), 4, ["row", "email"], ["4", "cy@x.com"]) == ["Cy", "cy@x.com", "Lu"]
    assert retries.merged(original(), 2, ["first name", "row"], ["Bo", "2"]) == ["Bo", "bo@x.com", "Ray"]
    assert retries.unknown_columns(original(), ["row", "email", "Notes", "line"]) == ["Notes"]


def test_rows_given_as_json_become_a_whole_retry_file_in_the_original_columns():
    text = retries.rows_csv(original(), [(4, {"email": "cy@x.com"}), (2, {"First Name": "Bo", "lastName": ""})])

    rows = list(csv.reader(io.StringIO(text)))
    assert rows == [[*HEADER, "row"], ["Cy", "cy@x.com", "Lu", "4"], ["Bo", "bo@x.com", "", "2"]]


def retry_request(text: str, **fields) -> ImportRequest:
    return ImportRequest(file_name="fixes.csv", content_base64=base64.b64encode(text.encode()).decode(),
                         retry_of="orig-1", requested_by="acme", **fields)


def plan(text: str, basis: retries.Basis | None = None, **fields) -> list:
    found = original()
    basis = basis or retries.Basis(found, found.retryable)
    return plan_retry(retry_request(text, **fields), "retry-1", basis, Limits(), 500)


def test_a_retry_is_planned_under_the_original_row_numbers_lines_mode_and_mapping():
    text = "First Name,Mail,lastName,row,line,errors\r\nCarl,cy@x.com,Lu,4,6,bad\r\nBo,bo@x.com,Ray,2,3,empty\r\n"

    job, chunk = plan(text, options=ImportOptions(callback_url="https://partner.example/hook"))

    assert isinstance(job.event, JobAccepted) and job.topic == topics.JOBS
    assert (job.event.total, job.event.retry_of, job.event.options.mode) == (2, "orig-1", Mode.CREATE_ONLY)
    assert job.event.options.callback_url == "https://partner.example/hook"
    assert job.event.mapping.columns == {"Mail": "email"}
    assert isinstance(chunk.event, Chunk) and chunk.event.rows == (4, 2) and chunk.event.lines == (6, 3)
    accepted, rejected = validate_chunk(chunk.event)
    assert [(r.row, r.line, r.values.email, r.values.first_name) for r in accepted] == [
        (4, 6, "cy@x.com", "Carl"), (2, 3, "bo@x.com", "Bo")]
    assert rejected == []


def test_a_row_not_rejected_travels_with_its_answer_and_is_never_checked_nor_written():
    text = "row,email,firstName\r\n3,ann@x.com,Ann\r\n4,cy@x.com,Cy\r\n5,di@x.com,Di\r\n"

    job, chunk = plan(text)

    assert chunk.event.refused.keys() == {3, 5}
    accepted, rejected = validate_chunk(chunk.event)
    assert [r.row for r in accepted] == [4]
    assert [(r.row, [e.code for e in r.errors]) for r in rejected] == [(3, ["not_rejected"]), (5, ["not_rejected"])]


def test_repeats_inside_a_retry_are_told_by_original_row_numbers():
    text = "row,email,firstName\r\n4,same@x.com,Cy\r\n2,same@x.com,Bo\r\n"

    _, chunk = plan(text)

    _, rejected = validate_chunk(chunk.event)
    assert [(r.row, r.errors[0].code) for r in rejected] == [(2, "duplicate_email")]
    assert "row 4 of this file" in rejected[0].errors[0].message


def test_the_plan_bound_when_first_taken_decides_even_if_rows_were_fixed_since():
    found = original(fixed=frozenset({2, 4, 5}))  # another retry fixed 2 and 4 after this one was first taken
    text = "row,email\r\n4,cy@x.com\r\n"

    _, chunk = plan(text, retries.Basis(found, frozenset({2, 4})))

    assert chunk.event.refused == {}


def test_a_retry_that_cannot_start_is_refused_whole_under_its_own_job():
    found = original()
    (refused,) = plan("row,email\r\n4,x@x.com\r\n",
                      retries.Basis(found, frozenset(), retries.refusal(found, "intruder", trusted=False)))
    assert isinstance(refused.event, JobRefused) and refused.event.reason.code == "retry_not_allowed"
    assert refused.event.retry_of == "orig-1" and refused.key == "retry-1"

    (bad_rows,) = plan("row,email\r\n9,x@x.com\r\n")
    assert bad_rows.event.reason.code == "invalid_retry_rows"
