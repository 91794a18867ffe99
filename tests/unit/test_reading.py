"""File-level rules of the uploader: what is a CSV we accept, and what its header and records are."""

import codecs

import pytest

from shared.events import Issue
from shared.reading import Limits, ReadFile, read_file
from tests.catalogue import DOCX, OLE2, PLAIN_ZIP, PPTX, XLSX, bulk, text, zip_of

CLIENTS = ("firstName,lastName,email", "Ann,Lee,ann@x.com", "Bob,Smith,bob@x.com")


def read(data: bytes, **limits) -> ReadFile:
    result = read_file(data, Limits(**limits))
    assert isinstance(result, ReadFile), result
    return result


def refusal(data: bytes, **limits) -> Issue:
    result = read_file(data, Limits(**limits))
    assert isinstance(result, Issue), result
    return result


# --- content sniffing: the content decides, not the name ------------------------------------------


@pytest.mark.parametrize(
    "data, code",
    [
        (b"MZ\x90\x00\x03\x00", "executable_content"),
        (b"\x7fELF\x02\x01\x01", "executable_content"),
        (text("#!/usr/bin/env python", "print(1)"), "script_content"),
        (text("  #!/bin/sh", "rm -rf /"), "script_content"),
        (XLSX, "excel_workbook"),
        (PLAIN_ZIP, "zip_archive"),
        (zip_of(), "zip_archive"),
        (DOCX, "zip_archive"),
        (OLE2, "office_document"),
        (b"%PDF-1.4\n", "pdf_document"),
        (text("<!DOCTYPE html>", "<html></html>"), "markup_document"),
        (text("<html><body>Ann</body></html>"), "markup_document"),
        (text('<?xml version="1.0" encoding="UTF-8"?>', "<a/>"), "markup_document"),
        (text("<table><tr><td>firstName</td></tr></table>"), "markup_document"),
        (b"firstName,email\nAnn\x00,ann@x.com\n", "binary_content"),
    ],
)
def test_content_that_is_not_a_csv_file_is_rejected_whole(data: bytes, code: str):
    assert refusal(data).code == code


def test_a_powerpoint_file_is_a_zip_archive_not_an_excel_workbook():
    # Only a zip holding xl/ is a workbook; telling the user to open a presentation in Excel is wrong.
    assert refusal(PPTX).code == "zip_archive"


def test_an_excel_workbook_is_told_how_to_save_it_as_csv():
    assert "CSV" in refusal(XLSX).message and "Excel" in refusal(XLSX).message


def test_a_csv_whose_values_mention_markup_is_still_a_csv():
    result = read(text("firstName,email", "<b>Ann</b>,ann@x.com"))
    assert result.records == [["<b>Ann</b>", "ann@x.com"]]


# --- encodings --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        text("firstName,email", "Zoë,zoe@x.com"),
        text("firstName,email", "Zoë,zoe@x.com", bom=codecs.BOM_UTF8),
        text("firstName,email", "Zoë,zoe@x.com", encoding="utf-16"),
        text("firstName,email", "Zoë,zoe@x.com", encoding="utf-16-le", bom=codecs.BOM_UTF16_LE),
        text("firstName,email", "Zoë,zoe@x.com", encoding="utf-16-be", bom=codecs.BOM_UTF16_BE),
    ],
    ids=["utf-8", "utf-8 with BOM", "utf-16", "utf-16-le with BOM", "utf-16-be with BOM"],
)
def test_unicode_files_are_read_without_warning_and_the_mark_is_not_part_of_the_header(data: bytes):
    result = read(data)

    assert result.header == ("firstName", "email")
    assert result.records == [["Zoë", "zoe@x.com"]]
    assert result.warnings == []


def test_a_file_that_is_not_utf8_is_read_as_windows_1252_with_a_warning():
    result = read(text("firstName,lastName,email", "René,Müller €,rene@x.com", encoding="cp1252"))

    assert result.records == [["René", "Müller €", "rene@x.com"]]
    assert [w.code for w in result.warnings] == ["decoded_as_windows_1252"]
    assert "Windows-1252" in result.warnings[0].message


@pytest.mark.parametrize(
    "data",
    [
        text("firstName,email", "Ann,ann@x.com", encoding="utf-32"),
        text("firstName,email", "Ann,ann@x.com", encoding="utf-32-be", bom=codecs.BOM_UTF32_BE),
        text("firstName,email", "Ann,ann@x.com", encoding="utf-16-le"),
        text("firstName,email", "Ann,ann@x.com", encoding="utf-16-be"),
        b"firstName,email\nAnn\x81,ann@x.com\n",
        codecs.BOM_UTF8 + b"firstName,email\nAnn\xff,ann@x.com\n",
    ],
    ids=["utf-32", "utf-32-be", "utf-16-le without BOM", "utf-16-be without BOM", "undecodable", "bad utf-8 after BOM"],
)
def test_encodings_we_cannot_read_reliably_are_rejected(data: bytes):
    issue = refusal(data)
    assert issue.code == "unsupported_encoding"
    assert "UTF-8" in issue.message


# --- delimiters and line endings --------------------------------------------------------------------


@pytest.mark.parametrize(
    "header, delimiter, warned",
    [
        ("firstName,lastName,email", ",", None),
        ("firstName;lastName;email", ";", "semicolons"),
        ("firstName\tlastName\temail", "\t", "tabs"),
    ],
)
def test_the_delimiter_is_the_one_the_header_line_uses(header: str, delimiter: str, warned: str | None):
    row = delimiter.join(["Ann", "Lee, Jr.", "ann@x.com"]) if delimiter != "," else 'Ann,"Lee, Jr.",ann@x.com'

    result = read(text(header, row))

    assert result.delimiter == delimiter
    assert result.records == [["Ann", "Lee, Jr.", "ann@x.com"]]
    delimiter_warnings = [w for w in result.warnings if w.code == "delimiter"]
    if warned:
        assert len(delimiter_warnings) == 1 and warned in delimiter_warnings[0].message
    else:
        assert delimiter_warnings == []


def test_delimiters_inside_a_quoted_header_name_do_not_count():
    result = read(text('"Notes; free text; more",firstName,email', "x,Ann,ann@x.com"))
    assert result.delimiter == ","
    assert result.columns == {"firstName": 1, "email": 2}


@pytest.mark.parametrize("leading", ["\n", "\r\n", "\n\n"], ids=["LF", "CRLF", "two blank lines"])
def test_blank_lines_before_the_header_do_not_hide_its_delimiter(leading: str):
    result = read(leading.encode() + text("firstName;email", "Ann;ann@x.com"))
    assert result.delimiter == ";"
    assert result.records == [["Ann", "ann@x.com"]]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_every_line_ending_gives_the_same_records_and_lines(eol: str):
    result = read(text(*CLIENTS, eol=eol))

    assert result.records == [["Ann", "Lee", "ann@x.com"], ["Bob", "Smith", "bob@x.com"]]
    assert result.lines == [2, 3]


def test_the_last_line_needs_no_line_break():
    assert read(b"firstName,email\nAnn,ann@x.com").records == [["Ann", "ann@x.com"]]


# --- quoting ---------------------------------------------------------------------------------------


def test_quoted_values_keep_delimiters_doubled_quotes_and_line_breaks():
    result = read(text("firstName,lastName,email", '"Ann, Marie","O""Brien","ann@x.com"', 'Bob,"Lee', 'Smith",bob@x.com'))

    assert result.records == [["Ann, Marie", 'O"Brien', "ann@x.com"], ["Bob", "Lee\nSmith", "bob@x.com"]]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"], ids=["LF", "CRLF", "CR"])
def test_a_record_spanning_lines_starts_on_its_first_line_and_the_next_one_after_it(eol: str):
    result = read(text("firstName,lastName,email", 'Ann,"Lee', "", 'Smith",ann@x.com', "Bob,Lee,bob@x.com", eol=eol))

    assert result.lines == [2, 5]


def test_an_unterminated_quote_is_rejected_naming_the_line_where_it_starts():
    issue = refusal(text("firstName,email", "Ann,ann@x.com", "", 'Bob,"bob@x.com', "Cid,cid@x.com"))

    assert issue.code == "unterminated_quote"
    assert "line 4" in issue.message


# --- the header -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first_name, email",
    [
        ("firstName", "email"),
        ("First Name", "Email"),
        ("first_name", "EMAIL"),
        ("FIRSTNAME", "e-mail"),
        ("first-name", "E Mail"),
        ("  First  Name ", " email "),
    ],
)
def test_header_matches_ignoring_case_spaces_underscores_and_hyphens(first_name: str, email: str):
    result = read(text(f"{first_name},{email}", "Ann,ann@x.com"))
    assert result.columns == {"firstName": 0, "email": 1}
    assert result.warnings == []


def test_every_client_field_is_recognised_in_any_order():
    header = "Type,DESK,project,User Name,last_name,Middle-Name,E-mail,first name"
    result = read(text(header, "personal,d,p,ann,Lee,M,ann@x.com,Ann"))

    assert result.columns == {
        "type": 0, "desk": 1, "project": 2, "username": 3, "lastName": 4, "middleName": 5, "email": 6, "firstName": 7
    }


@pytest.mark.parametrize(
    "header, missing",
    [
        ("Kunde,email", ["firstName"]),
        ("firstName,Kontakt", ["email"]),
        ("Kunde,Kontakt", ["firstName", "email"]),
    ],
)
def test_missing_required_columns_are_named_with_the_header_found(header: str, missing: list[str]):
    issue = refusal(text(header, "Ann,ann@x.com"))

    assert issue.code == "missing_columns"
    for name in missing:
        assert f'"{name}" is missing; no column looks like it' in issue.message
    for found in header.split(","):
        assert found in issue.message


@pytest.mark.parametrize(
    "header, said",
    [
        ("firstName,Mail", '"email" is missing; the column "Mail" looks like it'),
        ("Vorname,Mail", '"firstName" is missing; the column "Vorname" looks like it'),
        ("firstName,client_email,Courriel", '"email" is missing; the columns "client_email" and "Courriel" look like it'),
        ("Given,Nachname,email", '"firstName" is missing; the column "Given" looks like it'),
    ],
)
def test_a_missing_required_field_names_the_columns_that_could_be_it(header: str, said: str):
    """A partner can write its column map from the refusal alone."""
    issue = refusal(text(header, "Ann,ann@x.com,x"))

    assert issue.code == "missing_columns"
    assert said in issue.message
    assert "column_map" in issue.message


@pytest.mark.parametrize(
    "header, column, first, second",
    [("firstName,email,First Name", "firstName", "firstName", "First Name"), ("E-mail,firstName,email", "email", "E-mail", "email")],
)
def test_a_column_named_twice_is_rejected_naming_both_spellings(header: str, column: str, first: str, second: str):
    issue = refusal(text(header, "Ann,ann@x.com,Ann"))

    assert issue.code == "duplicate_column"
    assert issue.field == column
    assert f"“{first}”" in issue.message and f"“{second}”" in issue.message


def test_unknown_columns_are_ignored_with_a_warning_naming_them():
    result = read(text("firstName,Phone,email,Favourite Colour", "Ann,555,ann@x.com,blue"))

    assert result.columns == {"firstName": 0, "email": 2}
    assert [w.code for w in result.warnings] == ["unknown_columns"]
    assert "Phone" in result.warnings[0].message and "Favourite Colour" in result.warnings[0].message


def test_unnamed_columns_are_neither_fields_nor_unknown():
    result = read(text("firstName,email,", "Ann,ann@x.com,"))
    assert result.warnings == []


# --- records and limits ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data", [b"", b"   ", b"\n\n\r\n", codecs.BOM_UTF8, codecs.BOM_UTF16_LE, "\r\n".encode("utf-16")],
    ids=["no bytes", "spaces", "blank lines", "utf-8 BOM only", "utf-16 BOM only", "utf-16 blank line"],
)
def test_an_empty_file_is_rejected(data: bytes):
    assert refusal(data).code == "empty_file"


@pytest.mark.parametrize("data", [text("firstName,email"), text("firstName,email", "", ",", "  ,  ", "")])
def test_a_header_without_rows_has_no_records(data: bytes):
    assert refusal(data).code == "no_records"


def test_blank_and_delimiter_only_lines_are_not_records_but_lines_stay_physical():
    result = read(text("firstName,email", "", "Ann,ann@x.com", ",", " , ", "", "Bob,bob@x.com"))

    assert result.records == [["Ann", "ann@x.com"], ["Bob", "bob@x.com"]]
    assert result.lines == [3, 7]


def test_more_records_than_allowed_is_rejected_with_the_count_and_the_limit():
    issue = refusal(bulk(6, "x.com"), max_records=5)

    assert issue.code == "too_many_records"
    assert "6 records" in issue.message and "5" in issue.message


def test_blank_lines_do_not_count_towards_the_record_limit():
    assert len(read(bulk(5, "x.com", blank_every=1), max_records=5).records) == 5


def test_the_default_limit_is_5000_records():
    assert len(read(bulk(5000, "x.com")).records) == 5000
    issue = refusal(bulk(5001, "x.com"))
    assert issue.code == "too_many_records" and "5001" in issue.message


def test_a_file_over_the_byte_limit_is_rejected_with_both_sizes():
    data = bulk(100, "x.com")

    issue = refusal(data, max_bytes=len(data) - 1)

    assert issue.code == "file_too_large"
    assert "KiB" in issue.message
    assert isinstance(read_file(data, Limits(max_bytes=len(data))), ReadFile)


def test_the_default_byte_limit_is_10_mib():
    issue = refusal(b"firstName,email\n" + b"x" * (10 * 1024 * 1024))
    assert issue.code == "file_too_large"
    assert "10.0 MiB" in issue.message


def test_header_columns_records_and_lines_describe_the_file():
    result = read(text("email,firstName,Notes", "ann@x.com,Ann,n", "bob@x.com,Bob"))

    assert result.header == ("email", "firstName", "Notes")
    assert result.columns == {"email": 0, "firstName": 1}
    assert result.records == [["ann@x.com", "Ann", "n"], ["bob@x.com", "Bob"]]
    assert result.lines == [2, 3]


# --- the file's shape: limits that keep every file cheap to read ---------------------------------------------


def test_the_default_limits_are_the_settings_defaults():
    from shared.settings import Settings

    defaults = {name: info.default for name, info in Settings.model_fields.items()}
    limits = Limits()
    for name in ("max_records", "max_bytes", "max_columns", "max_header_chars", "max_record_chars"):
        assert getattr(limits, name) == defaults[name], name


def test_a_header_with_more_columns_than_allowed_is_rejected_with_the_count_and_the_limit():
    header = ",".join(["firstName", "email", *(f"c{i}" for i in range(4))])

    issue = refusal(text(header, "Ann,ann@x.com"), max_columns=5)

    assert issue.code == "too_many_columns"
    assert "6 columns" in issue.message and "at most 5" in issue.message
    assert isinstance(read_file(text(header, "Ann,ann@x.com"), Limits(max_columns=6)), ReadFile)


def test_a_header_line_too_long_to_count_says_more_than_the_limit():
    issue = refusal(text("firstName,email" + ",c" * 100, "Ann,ann@x.com"), max_columns=5, max_header_chars=4)

    assert issue.code == "too_many_columns"
    assert "more than 5 columns" in issue.message


def test_a_column_name_longer_than_allowed_is_rejected_naming_the_column():
    issue = refusal(text("firstName,email,Notes about the client", "Ann,ann@x.com,n"), max_header_chars=20)

    assert issue.code == "header_too_long"
    assert "Column 3" in issue.message and "Notes about the client" in issue.message
    assert "22 characters" in issue.message and "at most 20" in issue.message


def test_a_header_line_that_is_one_endless_name_is_too_long():
    issue = refusal(b'firstName,email,"' + b"x" * 5000, max_columns=4, max_header_chars=100)

    assert issue.code == "header_too_long"
    assert "line 1" in issue.message


def test_a_record_longer_than_allowed_is_rejected_naming_its_line():
    data = text("firstName,email", "Ann,ann@x.com", "", "Bob," + "b" * 100, "Cid,cid@x.com")

    issue = refusal(data, max_record_chars=100)

    assert issue.code == "record_too_long"
    assert "line 4" in issue.message and "100 characters" in issue.message
    assert isinstance(read_file(data, Limits(max_record_chars=104)), ReadFile)


def test_a_record_length_counts_its_quotes_and_delimiters_but_not_its_line_break():
    record = 'Ann,"a ""b"" c"'  # 15 characters

    assert isinstance(read_file(text("firstName,email", record, eol="\r\n"), Limits(max_record_chars=15)), ReadFile)
    assert refusal(text("firstName,email", record), max_record_chars=14).code == "record_too_long"


def test_a_quote_that_never_closes_in_a_long_file_is_a_record_too_long_that_says_to_check_the_quotes():
    issue = refusal(text("firstName,email", 'Ann,"ann@x.com', *(["Bob,bob@x.com"] * 50)), max_record_chars=200)

    assert issue.code == "record_too_long"
    assert "line 2" in issue.message and "quotes" in issue.message


def test_a_record_with_more_values_than_columns_allowed_is_rejected_naming_its_line():
    issue = refusal(text("firstName,email", "Ann,ann@x.com", "Smith, Jr., Bob, the third, bob@x.com"), max_columns=4)

    assert issue.code == "too_many_columns"
    assert "Line 3 has 5 values" in issue.message and "commas" in issue.message


def test_reading_stops_at_one_record_too_many_and_counts_the_rest_up_to_twice_the_limit():
    assert "10 records" in refusal(bulk(10, "x.com"), max_records=5).message
    issue = refusal(bulk(11, "x.com"), max_records=5)
    assert issue.code == "too_many_records"
    assert "more than 10 records" in issue.message and "at most 5" in issue.message


def test_a_broken_record_after_too_many_records_is_still_counted_as_one():
    data = bulk(7, "x.com") + b'"never closed\n'

    issue = refusal(data, max_records=5)

    assert issue.code == "too_many_records"
    assert "more than 7 records" in issue.message


def test_the_header_is_checked_before_the_records():
    issue = refusal(text("name,mail", "Ann,ann@x.com", '"never closed'))
    assert issue.code == "missing_columns"


def test_blank_records_of_any_kind_are_skipped_however_many_there_are():
    data = text("firstName;email", "", ";;", '""; ', '"";"  "', '"', "", '"', "\x0b\x1c;\u2028", "Ann;ann@x.com")

    result = read(data, max_records=1, max_record_chars=16)

    assert result.records == [["Ann", "ann@x.com"]]
    assert result.lines == [10]
    # A quote that is not a value's first character is a plain character: that value is not blank.
    assert refusal(text("firstName;email", ' "" ; ', "Ann;ann@x.com"), max_records=1).code == "too_many_records"


def test_the_messages_about_the_header_name_at_most_twenty_columns():
    names = [f"Extra {i}" for i in range(30)]
    result = read(text(",".join(["firstName", "email", *names]), "Ann,ann@x.com"))

    message = result.warnings[0].message
    assert "Extra 19" in message and "Extra 20" not in message and "and 10 more" in message
    issue = refusal(text(",".join(names), "x"))
    assert issue.code == "missing_columns" and "and 10 more" in issue.message
