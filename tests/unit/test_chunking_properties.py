"""Properties of cutting: chunks are bounded in bytes by construction and together hold exactly the file's rows.

Also the bound at the reader's limits: the biggest row a file can have fits in a chunk of its own, and so
do the row records the validator makes of it.
"""

import csv
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.uploader.chunking import CHUNK_MAX_BYTES, cut, find_repeats
from services.validator.chunk_shape import check_chunk_shape
from services.validator.routing import route
from shared.events import ImportOptions, Issue, Mode
from shared.reading import Limits, ReadFile, read_file
from shared.record_sizes import json_size
from shared.rules import validate_chunk

CHECKS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# Characters that cost the most JSON (control characters: 6 bytes; quotes: 2, and doubled in CSV: 4),
# or that CSV must quote, and some that are several UTF-8 bytes.
CHARS = st.sampled_from(['"', "\x01", "\x1f", "\\", "\n", "\r", ",", ";", " ", "a", "@", "é", "€", "😀", "="])
# The reader's limits scaled down, so that a few rows already fill a chunk.
LIMITS = Limits(max_records=40, max_columns=6, max_header_chars=12, max_record_chars=60)
# Comfortably above one row at those limits: header names and values at 6 bytes a character, the values
# again, the repeated value, the per-row allowance and the envelopes.
SMALL_BUDGET = 6 * 1024


@st.composite
def read_files(draw) -> ReadFile:
    """A ReadFile as the reader gives one within LIMITS: firstName and email, then other columns."""
    width = draw(st.integers(2, LIMITS.max_columns))
    others = [draw(st.text(CHARS, max_size=LIMITS.max_header_chars)) for _ in range(width - 2)]
    header = ("firstName", "email", *others)
    emails = st.sampled_from(["ann@x.com", "ANN@x.com", "bob@x.com", "", "😀@x.com"]) | st.text(CHARS, max_size=20)

    def record() -> list[str]:
        cells = [draw(st.text(CHARS, max_size=15)), draw(emails)]
        cells += [draw(st.text(CHARS, max_size=15)) for _ in range(draw(st.integers(0, LIMITS.max_columns - 2)))]
        cells = within_record_limit(cells)
        return cells if "".join(cells).strip() else within_record_limit(["x", *cells[1:]])  # blank: not a record

    records = [record() for _ in range(draw(st.integers(1, LIMITS.max_records)))]
    lines, line = [], 1
    for _ in records:
        line += draw(st.integers(1, 3))
        lines.append(line)
    return ReadFile(header=header, columns={"firstName": 0, "email": 1}, records=records, lines=lines, delimiter=",")


def within_record_limit(cells: list[str]) -> list[str]:
    """The values cut short so that with their delimiters they are at most max_record_chars characters."""
    kept, used = [], -1  # a delimiter before every value but the first
    for cell in cells:
        room = LIMITS.max_record_chars - used - 1
        if room < 0:
            break
        kept.append(cell[:room])
        used += 1 + len(kept[-1])
    return kept


def rows_of(chunk_csv: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(chunk_csv, newline="")))[1:]


def size(event) -> int:
    return len(event.model_dump_json().encode("utf-8"))


@CHECKS
@given(read_files(), st.integers(1, 12), st.integers(SMALL_BUDGET, 8 * SMALL_BUDGET), st.sampled_from(
    [ImportOptions(), ImportOptions(mode=Mode.UPDATE_ONLY, callback_url="https://example.com/" + "x" * 1000)]))
def test_chunks_stay_within_the_budget_and_hold_every_row_once_in_order(
    read: ReadFile, chunk_rows: int, budget: int, options: ImportOptions
):
    assert all(sum(map(len, cells)) + len(cells) - 1 <= LIMITS.max_record_chars for cells in read.records)
    chunks = cut("1b7c9b8e-5d7f-4a59-9d57-3c1f3f0f6d11", read, chunk_rows, options, max_bytes=budget)

    assert all(size(chunk) <= budget for chunk in chunks)
    assert all(1 <= len(chunk.lines) <= chunk_rows for chunk in chunks)
    for chunk in chunks:  # the validator admits every chunk our uploader cuts
        check_chunk_shape(chunk, LIMITS, chunk_rows, budget)
    assert [row for chunk in chunks for row in rows_of(chunk.csv)] == read.records
    repeats = find_repeats(read)
    first_row = 1
    for index, chunk in enumerate(chunks):
        rows = len(chunk.lines)
        assert (chunk.index, chunk.count, chunk.first_row) == (index, len(chunks), first_row)
        assert list(chunk.lines) == read.lines[first_row - 1 : first_row - 1 + rows]
        assert chunk.repeats == {r: repeats[r] for r in range(first_row, first_row + rows) if r in repeats}
        first_row += rows
    assert first_row == len(read.records) + 1


@CHECKS
@given(read_files(), st.integers(SMALL_BUDGET, 4 * SMALL_BUDGET))
def test_the_row_records_made_of_a_chunk_stay_within_the_budget(read: ReadFile, budget: int):
    """The validator's records of a chunk carry every row's original values by header name."""
    for chunk in cut("job", read, 500, ImportOptions(), max_bytes=budget):
        accepted, rejected = validate_chunk(chunk)
        for publication in route(chunk, accepted, rejected, 4):
            assert size(publication.event) <= budget


@CHECKS
@given(st.text(CHARS | st.characters(exclude_categories=["Cs"]), max_size=200))  # decoded text has no lone surrogates
def test_json_size_is_what_pydantic_writes(text: str):
    assert json_size(text) == size(Issue(code="", message=text)) - size(Issue(code="", message=""))


def test_json_size_counts_every_escape_as_pydantic_writes_it():
    """Each ASCII character and a few wider ones, alone and among plain text (the fast path and the escapes)."""
    for char in [*map(chr, range(128)), "é", "€", "😀", "\u2028"]:
        for text in (char, f"ab{char}cd{char}", f"{char}é"):
            assert json_size(text) == size(Issue(code="", message=text)) - size(Issue(code="", message="")), repr(text)


# --- at the reader's limits ---------------------------------------------------------------------------------


def file_at_the_limits(rows: int, header_fill: str = "\x01") -> bytes:
    """As many header names as allowed, each as long as allowed, of `header_fill`; then rows as long as allowed,
    of control characters (the most JSON a character costs: \\u0001), most of them in the client-field columns."""
    limits = Limits()
    padded = [name + "_" * (limits.max_header_chars - len(name)) for name in ("firstName", "email")]
    others = [f"{i:03}" + header_fill * (limits.max_header_chars - 3) for i in range(limits.max_columns - 2)]
    header = ",".join(csv_value(name) for name in [*padded, *others])
    room = limits.max_record_chars - (limits.max_columns - 1)  # characters left beside the delimiters
    lines = [header]
    for row in range(rows):
        email = f"{row}" + "\x01" * (room // 2 - 1)
        lines.append(",".join(["\x01" * (room - len(email)), email, *[""] * (limits.max_columns - 2)]))
    return ("\n".join(lines) + "\n").encode()


def csv_value(value: str) -> str:
    return '"' + value.replace('"', '""') + '"' if any(c in value for c in '",\r\n') else value


def read_at_the_limits(data: bytes) -> ReadFile:
    result = read_file(data)
    assert isinstance(result, ReadFile), result
    assert len(result.header) == Limits().max_columns
    assert all(len(name) == Limits().max_header_chars for name in result.header)
    assert all(sum(map(len, cells)) + len(cells) - 1 == Limits().max_record_chars for cells in result.records)
    return result


def test_the_biggest_row_a_file_can_have_fits_in_a_chunk_and_so_do_its_row_records():
    read = read_at_the_limits(file_at_the_limits(rows=3))

    chunks = cut("1b7c9b8e-5d7f-4a59-9d57-3c1f3f0f6d11", read, 500, ImportOptions())

    assert [len(chunk.lines) for chunk in chunks] == [1, 1, 1]  # two of them would not fit
    for chunk in chunks:
        assert size(chunk) <= CHUNK_MAX_BYTES
        check_chunk_shape(chunk, Limits(), 500, CHUNK_MAX_BYTES)
        accepted, rejected = validate_chunk(chunk)
        for publication in route(chunk, accepted, rejected, 4):
            assert size(publication.event) <= CHUNK_MAX_BYTES


def test_a_header_of_quotes_costs_less_than_one_of_control_characters_and_fits_too():
    read = read_at_the_limits(file_at_the_limits(rows=2, header_fill='"'))

    chunks = cut("job", read, 500, ImportOptions())

    assert all(size(chunk) <= CHUNK_MAX_BYTES for chunk in chunks)
    for chunk in chunks:  # the widest, longest header the limits allow is admitted by the validator
        check_chunk_shape(chunk, Limits(), 500, CHUNK_MAX_BYTES)
    assert [row for chunk in chunks for row in rows_of(chunk.csv)] == read.records
