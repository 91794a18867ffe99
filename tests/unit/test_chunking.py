"""Cutting a read file into chunks, and finding the rows that repeat an earlier email or username."""

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.uploader.chunking import cut, find_repeats
from shared.events import AcceptedRow, ImportOptions, Mode
from shared.reading import ReadFile, read_file
from shared.rules import check_row
from tests.catalogue import text


def read(*lines: str) -> ReadFile:
    result = read_file(text(*lines))
    assert isinstance(result, ReadFile), result
    return result


def parse(chunk_csv: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(chunk_csv, newline="")))


# --- repeats -----------------------------------------------------------------------------------------


def test_a_later_row_repeating_an_email_in_any_case_or_spacing_names_the_first_row():
    result = read(
        "firstName,email", "Ann,ann@x.com", "Bob,bob@x.com", "Ann,ANN@X.COM", "Ann, ann@x.com ", "Bob,Bob@x.com"
    )

    assert find_repeats(result) == {3: ("email", 1), 4: ("email", 1), 5: ("email", 2)}


def test_the_same_address_with_a_unicode_or_punycode_domain_is_a_repeat():
    # The validator stores both as ann@bücher.de, so they are one client.
    result = read("firstName,email", "Ann,ann@bücher.de", "Ann,ann@xn--bcher-kva.de")

    assert find_repeats(result) == {2: ("email", 1)}


def test_a_later_row_repeating_a_given_username_in_any_case_names_the_first_row():
    result = read("firstName,email,username", "Ann,ann@x.com,ann", "Bob,bob@x.com,", "Cid,cid@x.com,ANN")

    assert find_repeats(result) == {3: ("username", 1)}


def test_empty_emails_and_usernames_are_not_repeats():
    result = read("firstName,email,username", "Ann,,", "Bob,,", "Cid,cid@x.com,", "Dee,dee@x.com,")

    assert find_repeats(result) == {}


def test_a_row_repeating_both_an_email_and_a_username_is_reported_once_for_its_email():
    result = read("firstName,email,username", "Ann,ann@x.com,ann", "Ann,ann@x.com,ann")

    assert find_repeats(result) == {2: ("email", 1)}


def test_rows_are_counted_without_blank_lines():
    result = read("firstName,email", "", "Ann,ann@x.com", "", "Ann,ann@x.com")

    assert find_repeats(result) == {2: ("email", 1)}


# --- chunks -------------------------------------------------------------------------------------------


def test_chunks_cover_every_row_once_in_order_with_numbers_and_lines():
    result = read("firstName,email", *(f"C{i},c{i}@x.com" for i in range(1, 8)))

    chunks = cut("job-1", result, 3, ImportOptions())

    assert [(c.index, c.count, c.first_row, c.lines) for c in chunks] == [
        (0, 3, 1, (2, 3, 4)),
        (1, 3, 4, (5, 6, 7)),
        (2, 3, 7, (8,)),
    ]
    assert all(c.job_id == "job-1" for c in chunks)
    rows = [row for c in chunks for row in parse(c.csv)[1:]]
    assert rows == result.records


def test_every_chunk_starts_with_the_header_and_knows_the_columns():
    result = read("email,First Name,Notes", "ann@x.com,Ann,n", "bob@x.com,Bob,m")

    for chunk in cut("job-1", result, 1, ImportOptions()):
        assert parse(chunk.csv)[0] == ["email", "First Name", "Notes"]
        assert chunk.columns == {"email": 0, "firstName": 1}


def test_chunks_are_comma_separated_whatever_the_file_used():
    result = read("firstName;lastName;email", "Ann;Lee, Jr.;ann@x.com")

    (chunk,) = cut("job-1", result, 500, ImportOptions())

    assert parse(chunk.csv) == [["firstName", "lastName", "email"], ["Ann", "Lee, Jr.", "ann@x.com"]]


@pytest.mark.parametrize(
    "value",
    ["Lee, Jr.", 'O"Brien', '"quoted"', "Lee\nSmith", "Lee\r\nSmith", "Lee\rSmith", " spaced ", "\t=1"],
    ids=["comma", "quote", "quoted", "LF", "CRLF", "CR", "spaces", "tab"],
)
def test_a_value_reaches_the_validator_exactly_as_it_was_in_the_file(value: str):
    result = read_file(b'firstName,lastName,email\nAnn,"' + value.replace('"', '""').encode() + b'",ann@x.com\n')
    assert isinstance(result, ReadFile)

    (chunk,) = cut("job-1", result, 500, ImportOptions())

    assert parse(chunk.csv)[1:] == [["Ann", value, "ann@x.com"]]


def test_each_chunk_carries_the_repeats_of_its_own_rows_even_across_chunks():
    result = read("firstName,email", "Ann,ann@x.com", "Bob,bob@x.com", "Ann,ann@x.com", "Bob,bob@x.com")

    chunks = cut("job-1", result, 2, ImportOptions())

    assert [c.repeats for c in chunks] == [{}, {3: ("email", 1), 4: ("email", 2)}]


def test_chunks_carry_the_import_options():
    options = ImportOptions(mode=Mode.UPDATE_ONLY, dry_run=True)
    result = read("firstName,email", "Ann,ann@x.com", "Bob,bob@x.com")

    assert {c.options for c in cut("job-1", result, 1, options)} == {options}


# --- chunks bounded in bytes --------------------------------------------------------------------------------


def size(chunk) -> int:
    return len(chunk.model_dump_json().encode("utf-8"))


def test_a_chunk_ends_before_the_row_that_would_take_it_past_its_bytes_and_rows_stay_numbered():
    # Rows of very different sizes: a chunk holds up to 4 small ones, or one big one (61,800 and 61,500
    # bytes of JSON: a control character is 6 bytes, a euro sign 3) and nothing else.
    values = ["s"] * 5 + ["\x01" * 10_300] + ["s"] * 3 + ["€" * 20_500, "s"]
    result = read("firstName,email,Notes", *(f"C{i},c{i}@x.com,{v}" for i, v in enumerate(values)), "C0,c0@x.com,dup")

    chunks = cut("job-1", result, 4, ImportOptions(), max_bytes=64 * 1024)

    assert all(size(c) <= 64 * 1024 for c in chunks)
    assert [len(c.lines) for c in chunks] == [4, 1, 1, 3, 1, 2]
    assert [(c.index, c.count, c.first_row) for c in chunks] == [(i, 6, r) for i, r in enumerate([1, 5, 6, 7, 10, 11])]
    assert [row for c in chunks for row in parse(c.csv)[1:]] == result.records
    assert [line for c in chunks for line in c.lines] == result.lines
    assert [c.repeats for c in chunks] == [{}, {}, {}, {}, {}, {12: ("email", 1)}]


def test_the_default_budget_is_one_mebibyte():
    result = read("firstName,email,Notes", *(f"C{i},c{i}@x.com,{'n' * 60_000}" for i in range(40)))

    chunks = cut("job-1", result, 500, ImportOptions())

    assert len(chunks) > 1
    assert all(size(c) <= 1024 * 1024 for c in chunks)
    assert max(size(c) for c in chunks) > 512 * 1024  # not needlessly small either


def test_a_row_bigger_than_the_budget_gets_a_chunk_of_its_own():
    result = read("firstName,email", "Ann,ann@x.com", f"Bob,{'b' * 5000}@x.com", "Cid,cid@x.com")

    chunks = cut("job-1", result, 500, ImportOptions(), max_bytes=4096)

    assert [c.lines for c in chunks] == [(2,), (3,), (4,)]


def test_small_rows_are_cut_at_chunk_rows_as_before():
    result = read("firstName,email", *(f"C{i},c{i}@x.com" for i in range(1, 21)))

    assert [len(c.lines) for c in cut("job-1", result, 7, ImportOptions())] == [7, 7, 6]


def test_addresses_the_validator_stores_alike_are_repeats_whatever_their_spelling():
    # An ideographic full stop in the domain is a dot to the validator: the same client, so a repeat.
    result = read("firstName,email", "Ann,ann@example.com", "Ann,ann@example。com", "Ann,ANN@EXAMPLE。COM")

    assert find_repeats(result) == {2: ("email", 1), 3: ("email", 1)}


_local = st.text(alphabet="aAｂ.\"-_1", min_size=1, max_size=6)
_domain = st.sampled_from(["example.com", "EXAMPLE.com", "example。com", "bücher.de", "xn--bcher-kva.de", "exa mple.com"])


@given(st.lists(st.tuples(_local, _domain).map("@".join), min_size=2, max_size=6))
@settings(max_examples=300, deadline=None)
def test_two_rows_repeat_each_other_exactly_when_the_validator_stores_the_same_email(emails):
    rows = [f"Ann,{to_cell(email)}" for email in emails]
    repeats = find_repeats(read("firstName,email", *rows))
    stored = [stored_email(email) for email in emails]
    for row, email in enumerate(stored, start=1):
        earlier = [first for first, other in enumerate(stored[: row - 1], start=1) if email and other == email]
        if earlier:
            assert repeats.get(row) == ("email", earlier[0]), (emails, repeats)
        elif email:
            assert row not in repeats, (emails, repeats)


def to_cell(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def stored_email(value: str) -> str | None:
    """What the validator keeps for the address, or None when it refuses it."""
    header = read("firstName,email", "Ann,ann@example.com")
    checked = check_row(["Ann", value], list(header.header), header.columns, row=1, line=2)
    return checked.values.email if isinstance(checked, AcceptedRow) else None
