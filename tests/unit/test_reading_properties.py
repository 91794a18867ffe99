"""Properties of the reader over arbitrary input: it never raises, what it reads respects every limit, and
it reads exactly what a plain csv-module reading of the whole file reads whenever that is within the limits.

The reference below is the reader as it was before it was made linear (one csv.reader over the whole text):
slow on pathological files, but plainly right, so the fast reader must agree with it.
"""

import csv
import io

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from shared.events import Issue
from shared.reading import (
    DELIMITERS,
    Limits,
    ReadFile,
    clean_header_name,
    decode,
    detect_delimiter,
    excel_separator,
    match_header,
    read_file,
    sniff_binary,
)

LIMIT_CODES = {"too_many_records", "too_many_columns", "header_too_long", "record_too_long"}
PARSE_CODES = {"unterminated_quote", "malformed_csv"}
HEADER_CODES = {"missing_columns", "duplicate_column"}
CHECKS = settings(max_examples=400, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces a CSV file is made of, and the ones that trip readers up: quotes, every line ending, a BOM,
# control characters, Unicode whitespace (which csv does not take for line breaks), and header names.
PIECES = [
    ",", ";", "\t", '"', '""', "\r", "\n", "\r\n", " ", "a", "b", "é", "€", "😀", "\ufeff", "\x01", "\x0b", "\x0c",
    "\x1c", "\x85", "\xa0", "\u2028", "\u3000", "=1", "<b>", "x@y.z", "firstName", "email", "E-mail", "First Name",
    "\u200b", "Name", "sep=;", "sep=,\n",
]
HEADERS = [
    "", "firstName,email\n", "firstName;email\r\n", "email\tfirstName\n", '"firstName","email"\r', "\n\nfirstName,email",
    "sep=;\r\nfirstName;email\r\n", "\ufeff\ufefffirstName,email\n", "Full Name,E-mail Address\n",
]
ENCODINGS = ["utf-8", "utf-8-sig", "utf-16", "utf-16-be", "cp1252"]

csv_text = st.builds(
    lambda header, pieces: header + "".join(pieces),
    st.sampled_from(HEADERS),
    st.lists(st.sampled_from(PIECES), max_size=80),
)


def encoded(text: str, encoding: str) -> bytes:
    if encoding == "utf-16-be":
        return b"\xfe\xff" + text.encode("utf-16-be", errors="ignore")
    return text.encode(encoding, errors="ignore")


csv_files = st.builds(encoded, csv_text, st.sampled_from(ENCODINGS))
GENEROUS = Limits(max_records=10**6, max_columns=10**6, max_header_chars=10**6, max_record_chars=10**6)
SMALL = Limits(max_records=4, max_columns=5, max_header_chars=12, max_record_chars=30)


# --- the reference: the plain csv-module reading ------------------------------------------------------


def reference_delimiter(text: str) -> str:
    counts = dict.fromkeys(DELIMITERS, 0)
    quoted = False
    for char in text.lstrip("\r\n \ufeff"):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "\r\n":
            break
        elif not quoted and char in counts:
            counts[char] += 1
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def first_line_length(text: str) -> int:
    """How far reference_delimiter looks: to the first line break outside quotes."""
    stripped = text.lstrip("\r\n \ufeff")
    quoted = False
    for index, char in enumerate(stripped):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "\r\n":
            return index
    return len(stripped)


def reference_rows(text: str, delimiter: str) -> list[tuple[int, list[str], int]] | Issue:
    """Non-blank records: (line, cells, characters without the line break)."""
    stream = io.StringIO(text, newline="")
    reader = csv.reader(stream, delimiter=delimiter, strict=True)
    rows = []
    while True:
        start, offset = reader.line_num + 1, stream.tell()
        try:
            cells = next(reader)
        except StopIteration:
            return rows
        except csv.Error as error:
            if "end of data" in str(error):
                return Issue(code="unterminated_quote", message=f"starts on line {start} never ends")
            return Issue(code="malformed_csv", message=f"Line {reader.line_num} is not valid CSV ({error}).")
        end = stream.tell()
        raw = text[offset:end]
        length = len(raw) - (2 if raw.endswith("\r\n") else 1 if raw.endswith(("\r", "\n")) else 0)
        if any(cell.strip() for cell in cells):
            rows.append((start, cells, length))


def reference_sniff_text(text: str) -> Issue | None:
    head = text.lstrip()[:512].lower()
    if head.startswith("#!"):
        return Issue(code="script_content", message="")
    if head.startswith(("<!doctype", "<html", "<?xml", "<table", "<head", "<body", "<svg", "<script", "<xml")):
        return Issue(code="markup_document", message="")
    if head.startswith("{\\rtf"):
        return Issue(code="rich_text_document", message="")
    if "\x00" in text:
        return Issue(code="binary_content", message="")
    return None


def reference(data: bytes, delimiter: str | None = None) -> tuple[ReadFile | Issue, list[int]]:
    """What the plain reading gives with no limit but the byte limit, and each record's length (header first)."""
    if not data.strip():
        return Issue(code="empty_file", message="The file is empty."), []
    decoded = sniff_binary(data) or decode(data)
    if isinstance(decoded, Issue):
        return decoded, []
    text, warnings = decoded
    problem = reference_sniff_text(text)
    if problem:
        return problem, []
    # Stray BOMs and zero-width marks before the header, and Excel's sep= line, are no part of the data.
    separated = excel_separator(text.lstrip("\ufeff\u200b\u200c\u200d\u200e\u200f\u2060\u202a\u202b\u202c\u202d"
                                            "\u202e\u2066\u2067\u2068\u2069"))
    if isinstance(separated, Issue):
        return separated, []
    named, text = separated
    delimiter = delimiter or named or reference_delimiter(text)
    rows = reference_rows(text, delimiter)
    if isinstance(rows, Issue):
        return rows, []
    if not rows:
        return Issue(code="empty_file", message="The file is empty."), []
    (_, header, header_length), records = rows[0], rows[1:]
    header = [clean_header_name(name) for name in header]
    matched = match_header(header)
    if isinstance(matched, Issue):
        return matched, []
    columns, header_warnings = matched
    if not records:
        return Issue(code="no_records", message="no rows"), []
    if delimiter != ",":
        warnings = [*warnings, Issue(code="delimiter", message="")]
    read = ReadFile(tuple(header), columns, [cells for _, cells, _ in records], [line for line, _, _ in records],
                    delimiter, [*warnings, *header_warnings])
    return read, [header_length, *(length for _, _, length in records)]


def decoded_text(data: bytes) -> str | None:
    decoded = decode(data)
    return None if isinstance(decoded, Issue) else decoded[0]


def within(read: ReadFile, lengths: list[int], limits: Limits) -> bool:
    header_length, *record_lengths = lengths
    return (
        len(read.records) <= limits.max_records
        and len(read.header) <= limits.max_columns
        and all(len(name) <= limits.max_header_chars for name in read.header)
        and header_length <= limits.max_header_line
        and all(length <= limits.max_record_chars for length in record_lengths)
        and all(len(cells) <= limits.max_columns for cells in read.records)
    )


def same(a: ReadFile, b: ReadFile) -> bool:
    return (a.header, a.columns, a.records, a.lines, a.delimiter, [w.code for w in a.warnings]) == (
        b.header, b.columns, b.records, b.lines, b.delimiter, [w.code for w in b.warnings]
    )


def same_refusal(result: Issue, expected: Issue) -> bool:
    """The same reason; or, where the whole-file reading met a broken record first, the header's problem
    (the reader checks the header before it reads any record)."""
    if result.code == expected.code:
        if expected.code == "malformed_csv":
            return result.message == expected.message
        return expected.code != "unterminated_quote" or expected.message in result.message
    return expected.code in PARSE_CODES and result.code in HEADER_CODES


def assert_respects(read: ReadFile, limits: Limits) -> None:
    assert 1 <= len(read.records) <= limits.max_records
    assert len(read.lines) == len(read.records)
    assert all(a < b for a, b in zip(read.lines, read.lines[1:], strict=False))
    assert len(read.header) <= limits.max_columns
    assert all(len(name) <= limits.max_header_chars for name in read.header)
    for cells in read.records:
        assert len(cells) <= limits.max_columns
        assert sum(map(len, cells)) + len(cells) - 1 <= limits.max_record_chars  # values and delimiters
        assert "".join(cells).strip()  # blank lines are not records


# --- properties -----------------------------------------------------------------------------------------


@CHECKS
@given(st.binary(max_size=400))
@example(b'firstName,email\n"a""b,c\n')
@example(b"\xff\xfe" + "firstName,email\r\nA,a\r".encode("utf-16-le"))
def test_any_bytes_give_a_read_file_within_the_limits_or_an_issue(data: bytes):
    for limits in (Limits(), SMALL):
        result = read_file(data, limits)
        assert isinstance(result, ReadFile | Issue)
        if isinstance(result, ReadFile):
            assert_respects(result, limits)


@CHECKS
@given(csv_files)
@example(b'firstName,email\r\n"a\r\nb",x\r\n\r\n"",""\r\n c ,\n')
@example(b'firstName,email\n"",\n"  "\n" "x,\n')
@example(b"firstName,email\n\x1c\n\xc2\x85,\xe2\x80\xa8\nAnn,a@b.c")
def test_csv_files_are_read_as_the_csv_module_reads_them_when_no_limit_is_near(data: bytes):
    result = read_file(data, GENEROUS)
    expected, _ = reference(data)

    if isinstance(expected, ReadFile):
        assert isinstance(result, ReadFile), result
        assert same(result, expected)
    else:
        assert isinstance(result, Issue), result
        assert same_refusal(result, expected), (result, expected)


@CHECKS
@given(csv_files)
@example(b"firstName,email\na,b\nc,d\ne,f\ng,h\ni,j\n")
@example(b"firstName,email\na,b,c,d,e,f\n")
@example(b"firstName,email,0123456789abc\na,b\n")
@example(b'firstName,email\n"0123456789012345678901234567890"\n')
def test_with_small_limits_what_is_read_is_within_them_and_otherwise_the_same(data: bytes):
    result = read_file(data, SMALL)
    text = decoded_text(data)
    # The reader looks for the delimiter in the header's first characters only (a longer header is refused).
    expected, lengths = reference(data, text and detect_delimiter(text, SMALL.max_header_line))

    if isinstance(result, ReadFile):
        assert_respects(result, SMALL)
        assert isinstance(expected, ReadFile) and same(result, expected)
    elif isinstance(expected, ReadFile):
        assert not within(expected, lengths, SMALL), result
        assert result.code in LIMIT_CODES
    else:
        assert result.code in LIMIT_CODES or same_refusal(result, expected), (result, expected)


@CHECKS
@given(csv_text, st.integers(1, 40))
def test_the_delimiter_is_the_one_found_before_when_the_first_line_fits(text: str, limit: int):
    if first_line_length(text) <= limit:
        assert detect_delimiter(text, limit) == reference_delimiter(text)
    assert detect_delimiter(text, limit) in DELIMITERS
