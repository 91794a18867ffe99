"""Reading an uploaded file: is it a CSV we accept, and what are its header and records?

Pure functions over bytes. A file that cannot be imported gives back an Issue (the reason it is
rejected whole); one that can gives back a ReadFile.
"""

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field

from shared.events import Issue
from shared.fields import FIELDS, REQUIRED
DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


@dataclass(frozen=True)
class Limits:
    max_records: int = 5000
    max_bytes: int = 10 * 1024 * 1024


@dataclass(frozen=True)
class ReadFile:
    header: tuple[str, ...]
    columns: dict[str, int]
    records: list[list[str]]
    lines: list[int]
    delimiter: str
    warnings: list[Issue] = field(default_factory=list)


def refuse(code: str, message: str, field_name: str | None = None) -> Issue:
    return Issue(code=code, message=message, field=field_name)


def read_file(data: bytes, limits: Limits = Limits()) -> ReadFile | Issue:
    if len(data) > limits.max_bytes:
        return refuse(
            "file_too_large",
            f"The file is {_size(len(data))}; the limit is {_size(limits.max_bytes)}. Split it into smaller files.",
        )
    if not data.strip():
        return refuse("empty_file", "The file is empty.")
    problem = sniff_binary(data)
    if problem:
        return problem
    decoded = decode(data)
    if isinstance(decoded, Issue):
        return decoded
    text, warnings = decoded
    problem = sniff_text(text)
    if problem:
        return problem
    return read_records(text, limits, warnings)


def sniff_binary(data: bytes) -> Issue | None:
    """Content decides, not the file name."""
    if data.startswith(b"MZ") or data.startswith(b"\x7fELF"):
        return refuse("executable_content", "This is a program, not a CSV file. Executable content is not accepted.")
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        if b"xl/" in data[:65536]:
            return refuse(
                "excel_workbook",
                "This is an Excel workbook, not a CSV file: open it in Excel and use Save As > CSV UTF-8, then upload the .csv.",
            )
        return refuse("zip_archive", "This is a zip archive or an Office document, not a CSV file: save it as CSV and upload that.")
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return refuse(
            "office_document",
            "This is an old Excel (.xls) or Word file, not a CSV file: open it and save it as CSV, then upload the .csv.",
        )
    if data.startswith(b"%PDF"):
        return refuse("pdf_document", "This is a PDF document, not a CSV file.")
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return refuse("unsupported_encoding", "The file is in UTF-32, which is not supported: save it as CSV UTF-8.")
    return None


def sniff_text(text: str) -> Issue | None:
    head = text.lstrip()[:512].lower()
    if head.startswith("#!"):
        return refuse("script_content", "This is a script, not a CSV file. Scripts are not accepted.")
    if head.startswith(("<!doctype", "<html", "<?xml", "<table", "<head", "<body", "<svg", "<script", "<xml")):
        return refuse("markup_document", "This is an HTML or XML document, not a CSV file: export the data as CSV.")
    if head.startswith("{\\rtf"):
        return refuse("rich_text_document", "This is a Rich Text document, not a CSV file.")
    if "\x00" in text:
        return refuse("binary_content", "The file contains binary data (NUL bytes), so it is not a text CSV file.")
    return None


def decode(data: bytes) -> tuple[str, list[Issue]] | Issue:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252 with a warning."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            return refuse("unsupported_encoding", "The file says it is UTF-16 but its text is damaged: save it as CSV UTF-8.")
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), []
        except UnicodeDecodeError as error:
            return refuse(
                "unsupported_encoding",
                f"The file says it is UTF-8 but byte {error.start + 3} is not: save it again as CSV UTF-8.",
            )
    if b"\x00" in data:
        if _looks_like_utf16(data):
            return refuse(
                "unsupported_encoding",
                "The file is UTF-16 without a byte order mark: save it as CSV UTF-8 (or as Unicode text with its mark).",
            )
        return refuse("binary_content", "The file contains binary data (NUL bytes), so it is not a text CSV file.")
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError:
        pass
    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        return refuse(
            "unsupported_encoding",
            "The file's text encoding is not UTF-8, UTF-16 or Windows-1252: save it as CSV UTF-8.",
        )
    warning = Issue(
        code="decoded_as_windows_1252",
        message="The file is not UTF-8, so it was read as Windows-1252 (Excel's Western European encoding). Check accented letters.",
    )
    return text, [warning]


def _looks_like_utf16(data: bytes) -> bool:
    sample = data[:4096]
    even_zeros = sample[0::2].count(0)
    odd_zeros = sample[1::2].count(0)
    half = len(sample) // 2
    return half > 0 and max(even_zeros, odd_zeros) > half * 0.6


def detect_delimiter(text: str) -> str:
    """The delimiter the header line uses most, outside quotes; comma when it has none."""
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


def normalise_header(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFC", name)).lower()


_CANONICAL = {normalise_header(alias): f.column for f in FIELDS for alias in (f.column, *f.aliases)}


def match_header(header: list[str]) -> tuple[dict[str, int], list[Issue]] | Issue:
    """Column names matched ignoring case, spaces, '_' and '-'. Unknown columns are ignored with a warning."""
    columns: dict[str, int] = {}
    unknown: list[str] = []
    for index, name in enumerate(header):
        key = normalise_header(name)
        if not key:
            continue
        canonical = _CANONICAL.get(key)
        if canonical is None:
            unknown.append(name.strip())
        elif canonical in columns:
            first = header[columns[canonical]].strip()
            return refuse(
                "duplicate_column",
                f"The column {canonical} appears twice (as “{first}” and “{name.strip()}”): keep one of them.",
                canonical,
            )
        else:
            columns[canonical] = index
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        found = ", ".join(f"“{n.strip()}”" for n in header if n.strip()) or "nothing"
        return refuse(
            "missing_columns",
            f"The header must name the columns {' and '.join(REQUIRED)}; {' and '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} missing. The header found: {found}.",
            missing[0],
        )
    warnings = []
    if unknown:
        warnings.append(
            Issue(
                code="unknown_columns",
                message=f"These columns are not part of a client and were ignored: {', '.join(unknown)}.",
            )
        )
    return columns, warnings


def read_records(text: str, limits: Limits, warnings: list[Issue]) -> ReadFile | Issue:
    delimiter = detect_delimiter(text)
    rows = _parse(text, delimiter)
    if isinstance(rows, Issue):
        return rows
    if not rows:
        return refuse("empty_file", "The file is empty.")
    (header_line, header), records = rows[0], rows[1:]
    del header_line
    matched = match_header(header)
    if isinstance(matched, Issue):
        return matched
    columns, header_warnings = matched
    if not records:
        return refuse("no_records", "The file has a header but no client rows.")
    if len(records) > limits.max_records:
        return refuse(
            "too_many_records",
            f"The file has {len(records)} records; at most {limits.max_records} are allowed per file. "
            "Split it into smaller files.",
        )
    if delimiter != ",":
        warnings = [*warnings, Issue(code="delimiter", message=f"Columns are separated by {_DELIMITER_NAMES[delimiter]}s.")]
    return ReadFile(
        header=tuple(header),
        columns=columns,
        records=[cells for _, cells in records],
        lines=[line for line, _ in records],
        delimiter=delimiter,
        warnings=[*warnings, *header_warnings],
    )


def _parse(text: str, delimiter: str) -> list[tuple[int, list[str]]] | Issue:
    """Non-blank records with the physical line each one starts on."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[tuple[int, list[str]]] = []
    while True:
        start = reader.line_num + 1
        try:
            cells = next(reader)
        except StopIteration:
            return rows
        except csv.Error as error:
            if "end of data" in str(error) or "unexpected end" in str(error):
                return refuse(
                    "unterminated_quote",
                    f"A quoted value that starts on line {start} never ends: a closing \" is missing.",
                )
            return refuse("malformed_csv", f"Line {reader.line_num} is not valid CSV ({error}).")
        # Blank lines and lines of bare delimiters (Excel pads with them) are not records.
        if any(cell.strip() for cell in cells):
            rows.append((start, cells))


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"
