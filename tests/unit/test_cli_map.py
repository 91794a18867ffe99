"""`clients-import run --map COLUMN=FIELD` and `--mapping NAME`: read into the request's options, or refused
before anything is sent."""

import pytest

from clients_import.cli import column_map, summary
from shared.events import AppliedMapping, ImportNotification, JobStatus


def test_each_map_option_is_one_column_and_an_empty_field_ignores_it():
    assert column_map(["Mail=email", "Vorname=firstName", "Notiz="]) == {
        "Mail": "email", "Vorname": "firstName", "Notiz": None}
    assert column_map(["a=b=email"]) == {"a=b": "email"}  # a column name may hold '='; a field never does
    assert column_map([]) is None


@pytest.mark.parametrize("entries, says", [(["Mail"], "COLUMN=FIELD"), (["=email"], "COLUMN=FIELD"),
                                           (["Mail=email", "Mail=firstName"], "twice")])
def test_a_malformed_map_option_is_refused(entries, says):
    with pytest.raises(ValueError, match=says):
        column_map(entries)


def test_the_summary_says_which_mapping_was_used_and_which_columns_were_read():
    note = ImportNotification(job_id="j", file_name="p.csv", status=JobStatus.COMPLETED, total=1, created=1, updated=0,
                              unchanged=0, rejected=0,
                              mapping=AppliedMapping(name="partner", version=2, columns={"Mail": "email"},
                                                     fields={"email": "Mail", "firstName": "Vorname"}))

    assert "mapping partner (version 2): email from “Mail”, firstName from “Vorname”" in summary(note)


def test_a_mapping_named_but_not_found_adds_no_line_about_what_it_read():
    note = ImportNotification(job_id="j", file_name="p.csv", status=JobStatus.REJECTED, total=0, created=0, updated=0,
                              unchanged=0, rejected=0, mapping=AppliedMapping(name="german"))

    assert "version None" not in summary(note) and "nothing read" not in summary(note)
