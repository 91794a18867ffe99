"""A chunk's shape, checked before its rows are: nothing on the topic makes the validator's work unbounded.

Our uploader cuts chunks only from files within the limits (`shared.reading.Limits`): at most
`max_columns` column names of `max_header_chars` each, `chunk_rows` rows, a line number for each row,
column indexes inside the header, and no more rows than their records fit in `CHUNK_MAX_BYTES`
(shared/record_sizes.py). Anything else on `clients.import.chunks` was not cut by it, and
could cost without bound: each rejected row keeps its values under every header name, so a 100 KiB
record naming 100,000 empty columns over 150 rows once held the validator's event loop for 27 s and
2.4 GB. Such a chunk is dead-lettered at once. The uploader and the validator read the same settings.
"""

import csv
import io

from shared.events import Chunk
from shared.reading import Limits
from shared.record_sizes import ROW_ALLOWANCE, original_keys_size

__all__ = ["ChunkOutOfShape", "check_chunk_shape"]


class ChunkOutOfShape(ValueError):
    """A chunk our uploader would never have cut: the message says which bound it breaks."""


def check_chunk_shape(chunk: Chunk, limits: Limits, chunk_rows: int, record_max_bytes: int) -> None:
    rows = len(chunk.lines)
    if rows > chunk_rows:
        raise ChunkOutOfShape(f"{rows} rows; a chunk holds at most {chunk_rows}")
    if chunk.rows and len(chunk.rows) != rows:
        raise ChunkOutOfShape(f"{len(chunk.rows)} row numbers for {rows} rows")
    header = _header(chunk.csv, limits)
    if len(header) > limits.max_columns:
        raise ChunkOutOfShape(f"a header of {len(header)} columns; at most {limits.max_columns}")
    if any(len(name) > limits.max_header_chars for name in header):
        raise ChunkOutOfShape(f"a column name over {limits.max_header_chars} characters")
    if any(not 0 <= index < len(header) for index in chunk.columns.values()):
        raise ChunkOutOfShape(f"a column index outside its header of {len(header)} columns")
    # Our uploader ends a chunk before its rows' records would pass `record_max_bytes`, each row counted at
    # least its header names and an allowance (shared/record_sizes.py): more rows than that would make
    # the validator build and publish far more than a chunk's size (498 names of 200 characters over 500
    # rows: 51 MB and seconds of work from 107 KB).
    per_row = original_keys_size(header) + ROW_ALLOWANCE
    if rows > 1 and rows * per_row > record_max_bytes:
        raise ChunkOutOfShape(f"{rows} rows of a header this wide; our uploader cuts at most "
                              f"{max(1, record_max_bytes // per_row)} into one chunk")


def _header(text: str, limits: Limits) -> list[str]:
    # Only as much text as a header within the limits could take (and its line break) is read, and one
    # character more: a header that reads to the end of it is longer than the limits allow.
    head = text[: limits.max_header_line + 3]
    stream = io.StringIO(head, newline="")
    try:
        header = next(csv.reader(stream), [])
    except csv.Error as error:
        raise ChunkOutOfShape(f"a header that is not CSV ({error})") from error
    if stream.tell() >= len(head) < len(text):
        raise ChunkOutOfShape(f"a header line over {limits.max_header_line} characters")
    return header
