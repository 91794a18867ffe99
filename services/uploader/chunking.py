"""Cutting a read file into chunks, and knowing which rows repeat an earlier email or username."""

import csv
import io
import unicodedata

from shared.events import Chunk, ImportOptions

from .reading import ReadFile


def repeat_key(value: str) -> str:
    """Case-insensitive, and one key for the Unicode and the punycode (xn--) spelling of a domain."""
    key = unicodedata.normalize("NFC", value.strip()).lower()
    local, at, domain = key.rpartition("@")
    if at and "xn--" in domain:
        try:
            key = f"{local}@{domain.encode('ascii').decode('idna')}"
        except UnicodeError:
            pass
    return key


def find_repeats(read: ReadFile) -> dict[int, tuple[str, int]]:
    """Row number -> (field, first row) for each later row that reuses an email or a given username.

    Only the uploader sees the whole file, so it is the one to say which row came first.
    """
    repeats: dict[int, tuple[str, int]] = {}
    for field_name in ("email", "username"):
        column = read.columns.get(field_name)
        if column is None:
            continue
        first_seen: dict[str, int] = {}
        for row, cells in enumerate(read.records, start=1):
            key = repeat_key(cells[column]) if column < len(cells) else ""
            if not key:
                continue
            if key in first_seen:
                repeats.setdefault(row, (field_name, first_seen[key]))
            else:
                first_seen[key] = row
    return repeats


def to_csv(header: tuple[str, ...], records: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # CRLF: a lone CR or LF in a value gets quoted
    writer.writerow(header)
    writer.writerows(records)
    return out.getvalue()


def cut(job_id: str, read: ReadFile, chunk_rows: int, options: ImportOptions) -> list[Chunk]:
    repeats = find_repeats(read)
    starts = range(0, len(read.records), chunk_rows)
    return [
        Chunk(
            job_id=job_id,
            index=index,
            count=len(starts),
            first_row=start + 1,
            lines=tuple(read.lines[start : start + chunk_rows]),
            csv=to_csv(read.header, read.records[start : start + chunk_rows]),
            columns=read.columns,
            repeats={row: r for row, r in repeats.items() if start < row <= start + chunk_rows},
            options=options,
        )
        for index, start in enumerate(starts)
    ]
