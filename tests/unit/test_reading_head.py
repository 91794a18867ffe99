"""The head of a file as the mapping step sees it: its header and first records whatever the header names, read
as read_file reads them; and which column is which field when required ones are still missing."""

from shared.events import Issue
from shared.reading import Head, Limits, Matched, match_columns, read_file, read_head
from tests.catalogue import XLSX, text

PARTNER = text("\ufeff\u200bVorname ,Mail,Notiz", "", "Ann,ann@x.com,hi", " , ", "Bob,bob@x.com", "Cid,cid@x.com,", "Dee,d@x.com,")


def test_the_head_is_the_header_cleaned_and_the_first_records_past_blank_ones():
    head = read_head(PARTNER, Limits(), 3)

    assert isinstance(head, Head)
    assert head.header == ("Vorname", "Mail", "Notiz")
    assert head.records == [["Ann", "ann@x.com", "hi"], ["Bob", "bob@x.com"], ["Cid", "cid@x.com", ""]]


def test_the_head_honours_excel_s_separator_line_and_the_delimiter():
    head = read_head(text("sep=;", "Vorname;Mail", "Ann;ann@x.com"))

    assert (head.header, head.records, head.delimiter) == (("Vorname", "Mail"), [["Ann", "ann@x.com"]], ";")


def test_a_file_read_file_refuses_for_its_header_still_has_a_head():
    assert isinstance(read_file(PARTNER), Issue)
    assert read_head(PARTNER).header == ("Vorname", "Mail", "Notiz")


def test_a_file_that_is_no_csv_has_no_head():
    assert read_head(XLSX).code == "excel_workbook"
    assert read_head(text("")).code == "empty_file"


def test_the_head_stops_at_a_record_past_the_limits_and_leaves_the_rest_to_read_file():
    data = text("firstName,email", "Ann,ann@x.com", "Bob," + "x" * 100, "Cid,c@x.com")

    head = read_head(data, Limits(max_record_chars=50), 3)

    assert head.records == [["Ann", "ann@x.com"]]
    assert read_file(data, Limits(max_record_chars=50)).code == "record_too_long"


def test_the_match_names_what_is_missing_and_what_no_field_took():
    matched = match_columns(["Vorname", "E-mail Address", "Notiz"])

    assert isinstance(matched, Matched)
    assert (matched.columns, matched.missing, matched.unknown) == ({"email": 1}, ["firstName"], ["Vorname", "Notiz"])
    mapped = match_columns(["Vorname", "E-mail Address", "Notiz"], {"Vorname": "firstName", "Notiz": None})
    assert (mapped.columns, mapped.decided, mapped.missing) == ({"firstName": 0, "email": 1}, {0, 2}, [])


def test_a_whole_name_column_gives_the_first_name():
    assert match_columns(["Full Name", "Email"]).missing == []


def test_a_column_the_map_ignores_is_still_named_as_looking_like_a_missing_field():
    refused = read_file(text("Vorname,Mail", "Ann,ann@x.com"), Limits(), {"Vorname": "firstName", "Mail": None})

    assert refused.code == "missing_columns" and '"email" is missing; the column "Mail" looks like it' in refused.message
