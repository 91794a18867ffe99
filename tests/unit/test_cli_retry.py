"""`clients-import retry` with a JSON file: the rows become the retry's CSV, in the original's columns."""

import pytest

from clients_import.retrying import RetryRefused, _rows_file
from shared import retries
from shared.events import JobStatus, Mode
from shared.settings import Settings

SETTINGS = Settings(_env_file=None)


def original() -> retries.Original:
    return retries.Original(
        job_id="j", file_name="people.csv", status=JobStatus.COMPLETED_WITH_ERRORS, requested_by="cli", dry_run=False,
        mode=Mode.UPSERT, total=3, mapping={"fields": {"email": "Mail", "firstName": "Name"}},
        rejected={2: retries.RejectedRow(3, {"Name": "Bo", "Mail": "bo@"})})


def test_json_rows_become_the_original_columns_with_the_row_last():
    made = _rows_file(original(), b'{"rows": [{"row": 2, "values": {"email": "bo@x.com"}}]}', SETTINGS).decode()
    assert made.splitlines() == ["Name,Mail,row", "Bo,bo@x.com,2"]


@pytest.mark.parametrize("body", [b"[", b'{"rows": 1}', b'{"rows": [{"row": "2", "values": {}}]}',
                                  b'{"rows": [{"row": 2, "values": {"email": 5}}]}', b"[" * 5000])
def test_a_json_file_of_another_shape_is_refused_with_a_sentence(body):
    with pytest.raises(RetryRefused):
        _rows_file(original(), body, SETTINGS)


@pytest.mark.parametrize("body", [b'{"rows": [{"row": 2, "values": {"email": "\\ud800"}}]}',
                                  '{"rows": [{"row": 2, "values": {"email": "a@x.com"}}]}'.encode("utf-16"),
                                  b'{"rows": [{"row": 2, "values": {"email": "a\\u0000@x.com"}}]}',
                                  b'{"rows": [{"row": 2, "values": {}}], "dry_run": true}'])
def test_a_json_file_no_csv_holds_or_with_options_is_refused_with_a_sentence_not_a_crash(body):
    with pytest.raises(RetryRefused, match=r"\[(invalid_rows|invalid_json|invalid_options)\]"):
        _rows_file(original(), body, SETTINGS)
