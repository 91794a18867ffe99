"""Cutting a read file into chunks, each with the rows that repeat an earlier email or username (shared/rules.py).

A chunk ends at `chunk_rows` rows or before the row that would take it past `max_bytes`, whichever
comes first. The bytes counted are the chunk's own JSON, and a conservative estimate of the JSON of
the row records the validator makes of it (RowsAccepted, RowsRejected), each of which carries every
row's original values under every header name.
"""

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import SimpleNamespace

from shared.events import Chunk, ImportOptions, Issue, RowsAccepted, RowsRejected
from shared.fields import FIELDS
from shared.reading import ReadFile
from shared.record_sizes import ROW_ALLOWANCE, json_size, original_keys_size
from shared.rules import find_repeats

CHUNK_MAX_BYTES = 1024 * 1024  # the default of settings.chunk_max_bytes
# The JSON of an accepted row's normalised values: at most every field at its longest, 4 bytes a character.
VALUES_MAX = 4 * sum(f.max_length for f in FIELDS)


def to_csv(header: tuple[str, ...], records: list[list[str]]) -> str:
    return "".join(csv_lines([list(header), *records]))


def csv_lines(records: list[list[str]]) -> list[str]:
    """Each record as one CSV line, comma-separated, CRLF-ended (a lone CR or LF in a value gets quoted)."""
    lines: list[str] = []
    writer = csv.writer(SimpleNamespace(write=lines.append), lineterminator="\r\n")  # one write() per record
    writer.writerows(records)
    return lines


def cut(
    job_id: str, read: ReadFile, chunk_rows: int, options: ImportOptions, max_bytes: int = CHUNK_MAX_BYTES,
    numbers: list[int] | None = None, refused: dict[int, Issue] | None = None,
) -> list[Chunk]:
    """`numbers`: each record's row number when they are not 1, 2, 3... (a retry's rows keep the original's);
    `refused`: rows (by number) rejected without a check, and left out of the search for repeats."""
    refused = refused or {}
    number = (lambda index: numbers[index]) if numbers else (lambda index: index + 1)
    checked = read if not refused else replace(
        read, records=[[] if number(i) in refused else cells for i, cells in enumerate(read.records)])
    repeats = {number(row - 1): (name, number(first - 1)) for row, (name, first) in find_repeats(checked).items()}
    header = to_csv(read.header, [])
    lines = csv_lines(read.records)
    spans = _spans(read, lines, repeats, _Sizes.of(job_id, read, header, options), chunk_rows, max_bytes,
                   number if numbers else None, refused)
    return [
        Chunk(
            job_id=job_id,
            index=index,
            count=len(spans),
            first_row=number(start),
            lines=tuple(read.lines[start:end]),
            csv=header + "".join(lines[start:end]),
            columns=read.columns,
            repeats={number(i): repeats[number(i)] for i in range(start, end) if number(i) in repeats},
            options=options,
            rows=tuple(numbers[start:end]) if numbers else (),
            refused={number(i): refused[number(i)] for i in range(start, end) if number(i) in refused},
        )
        for index, (start, end) in enumerate(spans)
    ]


def _spans(
    read: ReadFile, lines: list[str], repeats: dict[int, tuple[str, int]], sizes: "_Sizes", chunk_rows: int,
    max_bytes: int, numbered: Callable[[int], int] | None = None, refused: dict[int, Issue] | None = None,
) -> list[tuple[int, int]]:
    """[start, end) of each chunk's rows. A row too big for any chunk still gets one of its own. `numbered`:
    each record's row number, when the chunks list them (a retry's)."""
    spans: list[tuple[int, int]] = []
    start, chunk_bytes, record_bytes = 0, sizes.chunk, sizes.record
    for index, cells in enumerate(read.records):
        row = numbered(index) if numbered else index + 1
        row_chunk, row_record = sizes.row(row, cells, lines[index], read.lines[index], repeats.get(row))
        if numbered:  # the chunk's `rows` lists it
            row_chunk += len(str(row)) + 1
        if refused and row in refused:  # its answer travels with it: `"row": {issue},`
            row_chunk += json_size(refused[row].model_dump_json()) + len(str(row)) + 4
        full = index - start >= chunk_rows
        if index > start and (full or chunk_bytes + row_chunk > max_bytes or record_bytes + row_record > max_bytes):
            spans.append((start, index))
            start, chunk_bytes, record_bytes = index, sizes.chunk, sizes.record
        chunk_bytes += row_chunk
        record_bytes += row_record
    if read.records:
        spans.append((start, len(read.records)))
    return spans


@dataclass(frozen=True)
class _Sizes:
    """JSON bytes: of a chunk and of a row record before any row, and what each row adds to them."""

    chunk: int  # a chunk's envelope and its header line
    record: int  # a row record's envelope
    original: int  # the header names as keys of a row's `original`, with their quotes, colons and commas
    columns: dict[str, int]  # the client fields' columns: their values become a row's normalised values

    @classmethod
    def of(cls, job_id: str, read: ReadFile, header: str, options: ImportOptions) -> "_Sizes":
        most = len(read.records)  # no chunk index, count or row number has more digits
        chunk = Chunk(job_id=job_id, index=most, count=most, first_row=most, lines=(), csv=header,
                      columns=read.columns, options=options)
        records = (RowsAccepted(job_id=job_id, chunk=most, options=options, rows=()),
                   RowsRejected(job_id=job_id, chunk=most, rows=()))
        return cls(
            chunk=_dumped(chunk),
            record=max(_dumped(r) for r in records),
            original=original_keys_size(read.header),
            columns=read.columns,
        )

    def row(
        self, row: int, cells: list[str], line_csv: str, line: int, repeat: tuple[str, int] | None
    ) -> tuple[int, int]:
        """What a row adds to its chunk, and (at most) to each row record made of that chunk."""
        chunk = json_size(line_csv) + len(str(line)) + 1
        record = self.original + json_size("".join(cells)) + ROW_ALLOWANCE
        record += min(json_size("".join(cells[i] for i in self.columns.values() if i < len(cells))), VALUES_MAX)
        if repeat:
            chunk += len(json.dumps({row: repeat})) + 1
            # The validator's duplicate message quotes the repeated value whole.
            column = self.columns.get(repeat[0], len(cells))
            record += json_size(cells[column]) if column < len(cells) else 0
        return chunk, record


def _dumped(event: Chunk | RowsAccepted | RowsRejected) -> int:
    return len(event.model_dump_json().encode("utf-8"))
