"""Reading an uploaded file: is it a CSV we accept, and what are its header and records?

Pure functions over bytes. A file that cannot be imported gives back an Issue (the reason it is
rejected whole); one that can gives back a ReadFile. The uploader reads every file with them; the API's
preview (POST /imports/preview) reads the same way, so the page shows what an import will do.

Any file up to the byte limit is read in time linear in its size and in memory bounded by it.
Regular expressions (C code) skip blank lines and find where each record ends, so no Python runs
per physical line; the csv module reads the cells of one record at a time, and never of a record
longer than the limits allow; and reading stops at the first limit a file passes.
"""

import csv
import difflib
import io
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache

from shared.events import Issue
from shared.fields import FIELDS, FULL_NAME, FULL_NAME_ALIASES, REQUIRED, TARGETS, target_of

DELIMITERS = (",", ";", "\t")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}
_NAMES_SHOWN = 20  # column names a message lists before "and N more"


@dataclass(frozen=True)
class Limits:
    """What one file may hold. The uploader builds it from the settings; the defaults are the settings' own."""

    max_records: int = 5000
    max_bytes: int = 10 * 1024 * 1024
    max_columns: int = 500
    max_header_chars: int = 200  # characters in one column name
    max_record_chars: int = 65_536  # characters in one record, its delimiters and quotes included

    @classmethod
    def of(cls, settings) -> "Limits":
        """The limits a deployment's settings set (shared/settings.py): the uploader's, and the API's preview."""
        return cls(max_records=settings.max_records, max_bytes=settings.max_bytes, max_columns=settings.max_columns,
                   max_header_chars=settings.max_header_chars, max_record_chars=settings.max_record_chars)

    @property
    def max_header_line(self) -> int:
        """The longest header line within both header limits: every name quoted and made of doubled quotes."""
        return self.max_columns * (2 * self.max_header_chars + 3)


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


def read_file(data: bytes, limits: Limits = Limits(), column_map: dict[str, str | None] | None = None,
              fields: bool = True) -> ReadFile | Issue:
    """`fields=False` reads the table only, finding no field in the header (a retry's file: shared/retries.py)."""
    prepared = prepare(data, limits)
    if isinstance(prepared, Issue):
        return prepared
    return read_records(prepared.text, limits, prepared.warnings, column_map, prepared.delimiter, fields)


@dataclass(frozen=True)
class Head:
    """A file's header (its names cleaned as the reader cleans them) and its first records, matched to no field."""

    header: tuple[str, ...]
    records: list[list[str]]
    delimiter: str


def read_head(data: "bytes | Prepared", limits: Limits = Limits(), count: int = 3) -> Head | Issue:
    """The header and the first `count` records, read as read_file reads them but whatever the header names:
    what a person maps a file's columns from. An Issue when the file or its header cannot be read at all.
    `data` may be the file already prepared (decoded once, then read twice: the API's preview)."""
    prepared = data if isinstance(data, Prepared) else prepare(data, limits)
    if isinstance(prepared, Issue):
        return prepared
    text = prepared.text
    delimiter = prepared.delimiter or detect_delimiter(text, limits.max_header_line)
    scan = _Scanner(text, delimiter)
    found = _read_header(scan, limits)
    if isinstance(found, Issue):
        return found
    header, pos = found
    records: list[list[str]] = []
    pos = scan.skip_blank(pos)
    while len(records) < count and pos < len(scan.text):
        record = scan.record(pos, limits.max_record_chars)
        if not isinstance(record, tuple):
            break  # what the rest of the file holds is read_file's to say
        cells, pos = record
        if "".join(cells).strip():
            records.append(cells)
        pos = scan.skip_blank(pos)
    return Head(header=tuple(clean_header_name(name) for name in header), records=records, delimiter=delimiter)


@dataclass(frozen=True)
class Prepared:
    """A file decoded: its text, the warnings its decoding gave, and the delimiter a `sep=` line names (if any)."""

    text: str
    warnings: list[Issue]
    delimiter: str | None


def size_refusal(size: int, limits: Limits) -> Issue | None:
    """`file_too_large` for a file of `size` bytes past the limit (the CLI asks before reading one), else None."""
    if size <= limits.max_bytes:
        return None
    return refuse("file_too_large",
                  f"The file is {size:,} bytes ({_size(size)}); the limit is {limits.max_bytes:,} bytes "
                  f"({_size(limits.max_bytes)}). Split it into smaller files.")


def prepare(data: bytes | bytearray, limits: Limits) -> Prepared | Issue:
    """The file decoded, once, or why it cannot be read at all. Nothing here copies the bytes."""
    if too_large := size_refusal(len(data), limits):
        return too_large
    if not data or data.isspace():  # not data.strip(): that copies the whole file
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
    text = text.lstrip(_STRAY)  # a second BOM (files concatenated, a BOM saved twice) or a zero-width mark
    found = excel_separator(text)
    if isinstance(found, Issue):
        return found
    delimiter, text = found
    return Prepared(text=text, warnings=warnings, delimiter=delimiter)


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


_FIRST_VISIBLE = re.compile(r"\S")


def sniff_text(text: str) -> Issue | None:
    first = _FIRST_VISIBLE.search(text)  # not text.lstrip(): that copies the whole file
    head = text[first.start() : first.start() + 512].lower() if first else ""
    if head.startswith("#!"):
        return refuse("script_content", "This is a script, not a CSV file. Scripts are not accepted.")
    if head.startswith(("<!doctype", "<html", "<?xml", "<table", "<head", "<body", "<svg", "<script", "<xml")):
        return refuse("markup_document", "This is an HTML or XML document, not a CSV file: export the data as CSV.")
    if head.startswith("{\\rtf"):
        return refuse("rich_text_document", "This is a Rich Text document, not a CSV file.")
    if "\x00" in text:
        return refuse("binary_content", "The file contains binary data (NUL bytes), so it is not a text CSV file.")
    return None


def decode(data: bytes | bytearray) -> tuple[str, list[Issue]] | Issue:
    """UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252 with a warning."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), []
        except UnicodeDecodeError:
            return refuse("unsupported_encoding", "The file says it is UTF-16 but its text is damaged: save it as CSV UTF-8.")
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return str(memoryview(data)[3:], "utf-8"), []  # a view: data[3:] would copy the file
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


# Invisible characters that are no part of a column's name: BOMs, zero-width spaces and joiners, direction
# marks and the like (Unicode's format characters, category Cf).
_STRAY = "\ufeff\u200b\u200c\u200d\u200e\u200f\u2060\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SEP_LINE = re.compile(r"sep=(.)?[ \t]*(?=\r\n|\r|\n|\Z)", re.IGNORECASE)


def excel_separator(text: str) -> tuple[str | None, str] | Issue:
    """Excel's first line `sep=;` names the delimiter and is no part of the data: the delimiter it names, and
    the text with that line left blank (so line numbers still count it); (None, text) when there is none."""
    line = _SEP_LINE.match(text)
    if not line:
        return None, text
    delimiter = line.group(1)
    if delimiter == "\t" or delimiter in DELIMITERS:
        return delimiter, text[line.end():]
    return refuse("malformed_csv", f"The file's first line (“{_show(line.group(0))}”) names a delimiter that is not "
                  "a comma, a semicolon or a tab: save the file as CSV with one of those.")


def clean_header_name(name: str) -> str:
    """A column name without the invisible characters around or inside it, nor the spaces around it."""
    if not name.isprintable() or any(c in _STRAY for c in name):
        name = "".join(c for c in name if c not in _STRAY and unicodedata.category(c) != "Cf")
    return name.strip()


_LEADING = re.compile(r"[\r\n \ufeff]*")
_LINE_BREAK = re.compile(r"[\r\n]")


def detect_delimiter(text: str, limit: int = Limits().max_header_line) -> str:
    """The delimiter the header line uses most, outside quotes; comma when it has none.

    Only the line's first `limit` characters are looked at: a longer header line is refused anyway.
    """
    start = _LEADING.match(text).end()
    counts = dict.fromkeys(DELIMITERS, 0)
    # Split on quotes: the even pieces are outside them, where a line break ends the header line.
    for index, piece in enumerate(text[start : start + limit].split('"')):
        if index % 2:
            continue
        end = _LINE_BREAK.search(piece)
        outside = piece[: end.start()] if end else piece
        for delimiter in DELIMITERS:
            counts[delimiter] += outside.count(delimiter)
        if end:
            break
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def normalise_header(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", unicodedata.normalize("NFC", name)).lower()


_CANONICAL = {normalise_header(alias): f.column for f in FIELDS for alias in (f.column, *f.aliases)}
_FULL_NAMES = {normalise_header(alias) for alias in FULL_NAME_ALIASES}
_MAP_PROBLEMS_SHOWN = 10


@dataclass(frozen=True)
class Matched:
    """Which column is which field (field -> column index), which columns a column map decided (ignored ones
    too), and the names of the columns no field took."""

    columns: dict[str, int]
    decided: set[int]
    unknown: list[str]

    def free(self, header: list[str] | tuple[str, ...]) -> list[str]:
        """The named columns no field took (ignored by the map or unknown): where a missing field may be."""
        taken = set(self.columns.values())
        return [name.strip() for index, name in enumerate(header) if index not in taken and name.strip()]

    @property
    def missing(self) -> list[str]:
        """The required fields no column is (a whole-name column gives firstName)."""
        return [n for n in REQUIRED if n not in self.columns and not (n == "firstName" and FULL_NAME in self.columns)]


def match_header(header: list[str], column_map: dict[str, str | None] | None = None) -> tuple[dict[str, int], list[Issue]] | Issue:
    """Which column is which field (match_columns), refused when a required field has no column.
    Unknown columns are ignored with a warning."""
    matched = match_columns(header, column_map)
    if isinstance(matched, Issue):
        return matched
    if matched.missing:
        return _missing(header, matched.missing, matched.free(header))
    warnings = []
    if matched.unknown:
        warnings.append(
            Issue(
                code="unknown_columns",
                message="These columns are not part of a client and were ignored: "
                f"{_listing([_show(n) for n in matched.unknown])}.",
            )
        )
    return matched.columns, warnings


def match_columns(header: list[str], column_map: dict[str, str | None] | None = None) -> Matched | Issue:
    """Which column is which field: the column map's say first, then names matched ignoring case, spaces, '_'
    and '-' (a field's name or one of its aliases); a whole-name column when no column is firstName."""
    mapped = apply_map(header, column_map or {})
    if isinstance(mapped, Issue):
        return mapped
    columns, decided = mapped
    by_map = set(columns)
    unknown: list[str] = []
    whole_names: list[int] = []
    for index, name in enumerate(header):
        key = normalise_header(name)
        if index in decided or not key:
            continue
        canonical = _CANONICAL.get(key)
        if canonical is None:
            if key in _FULL_NAMES:
                whole_names.append(index)
            else:
                unknown.append(name.strip())
        elif canonical in by_map:  # the map chose another column for this field
            unknown.append(name.strip())
        elif canonical in columns:
            return _duplicate(canonical, header[columns[canonical]], name)
        else:
            columns[canonical] = index
    if whole_names and "firstName" not in columns and FULL_NAME not in columns:
        if len(whole_names) > 1:
            return _duplicate(FULL_NAME, header[whole_names[0]], header[whole_names[1]])
        columns[FULL_NAME] = whole_names[0]
    else:
        unknown += [header[i].strip() for i in whole_names]
    return Matched(columns=columns, decided=decided, unknown=unknown)


def apply_map(header: list[str], column_map: dict[str, str | None]) -> tuple[dict[str, int], set[int]] | Issue:
    """The fields a column map gives (field -> column index) and every column it decides (ignored ones too),
    or `invalid_column_map` naming each of its problems: a column the file does not have (unless the map
    only ignores it), a field that does not exist, one field given two columns. A map's column is found as written in the header (its invisible
    characters and surrounding spaces aside), else ignoring case, spaces, '_' and '-' when that finds one."""
    columns: dict[str, int] = {}
    decided: set[int] = set()
    problems: list[str] = []
    find_column = _ColumnFinder(header)
    for column, field_name in column_map.items():
        index = find_column(column)
        if isinstance(index, str):
            if field_name is not None or "more than one" in index:
                problems.append(index)
            # (A column to ignore that the file does not have is already ignored: a saved mapping that
            # drops a partner's optional column fits that partner's files without it too.)
            continue
        if index in decided:
            problems.append(f"the column “{_show(header[index])}” is named twice")
            continue
        decided.add(index)
        if field_name is None:
            continue
        target = target_of(field_name)
        if target is None:
            problems.append(f"“{_show(field_name)}” is not a client field (the fields: {', '.join(TARGETS)})")
        elif target in columns:
            problems.append(f"two columns are mapped to {target} (“{_show(header[columns[target]])}” and "
                            f"“{_show(header[index])}”)")
        else:
            columns[target] = index
    if problems:
        shown = "; ".join(problems[:_MAP_PROBLEMS_SHOWN])
        more = f"; and {len(problems) - _MAP_PROBLEMS_SHOWN} more" if len(problems) > _MAP_PROBLEMS_SHOWN else ""
        return refuse("invalid_column_map", f"The column map does not fit this file: {shown}{more}. Nothing was "
                      f"imported. The file's columns: {_listing([f'“{_show(n)}”' for n in header if n.strip()])}.")
    return columns, decided


class _ColumnFinder:
    """The index of the header column a map names, or what is wrong with the name. Each header name is
    cleaned and normalised once, into dicts, so a map of any size is matched in time linear in the header
    and the map (a combined map has up to twice MAP_MAX_COLUMNS entries, a header up to MAX_COLUMNS names)."""

    def __init__(self, header: list[str]):
        self._exact: dict[str, list[int]] = {}
        self._normalised: dict[str, list[int]] | None = None  # made at the first name not found as written
        self._header = header
        for index, name in enumerate(header):
            self._exact.setdefault(name, []).append(index)

    def __call__(self, column: str) -> int | str:
        wanted = clean_header_name(column)
        found = self._exact.get(wanted)
        if not found:
            key = normalise_header(wanted)
            found = self._by_key().get(key) if key else None
        if not found:
            return f"the file has no column “{_show(column)}”"
        if len(found) > 1:
            return f"the file has more than one column “{_show(column)}”"
        return found[0]

    def _by_key(self) -> dict[str, list[int]]:
        if self._normalised is None:
            self._normalised = {}
            for index, name in enumerate(self._header):
                self._normalised.setdefault(normalise_header(name), []).append(index)
        return self._normalised


def _duplicate(field_name: str, first: str, second: str) -> Issue:
    return refuse(
        "duplicate_column",
        f"The column {field_name} appears twice (as “{_show(first.strip())}” and “{_show(second.strip())}”): "
        "keep one of them, or say which one with a column map.",
        field_name,
    )


def _missing(header: list[str], missing: list[str], unmatched: list[str]) -> Issue:
    """The required fields no column is, each with the columns that look like it: enough to write a map."""
    found = _listing([f"“{_show(n.strip())}”" for n in header if n.strip()]) or "nothing"
    said = []
    for name in missing:
        like = look_alikes(name, unmatched)
        if like:
            columns = " and ".join(f'"{_show(c)}"' for c in like)
            said.append(f'"{name}" is missing; the column{"s" if len(like) > 1 else ""} {columns} '
                        f'look{"" if len(like) > 1 else "s"} like it')
        else:
            said.append(f'"{name}" is missing; no column looks like it')
    return refuse(
        "missing_columns",
        f"The header must name the columns {' and '.join(REQUIRED)}: {'. '.join(said)}. Rename the columns, or "
        f"map them (column_map, or a saved mapping). The header found: {found}.",
        missing[0],
    )


_LOOK_ALIKES_SHOWN = 3


def look_alikes(field_name: str, names: list[str]) -> list[str]:
    """Columns whose names look like a field's: one of its hint words inside, or a spelling close to its own."""
    field = next(f for f in FIELDS if f.column == field_name)
    spellings = [normalise_header(n) for n in (field.column, field.key, *field.aliases)]
    hints = [normalise_header(h) for h in field.hints]
    alike = []
    for name in names:
        key = normalise_header(name)
        if any(h in key for h in hints) or difflib.get_close_matches(key, spellings, n=1, cutoff=0.75):
            alike.append(name)
    return alike[:_LOOK_ALIKES_SHOWN]


def read_records(text: str, limits: Limits, warnings: list[Issue], column_map: dict[str, str | None] | None = None,
                 delimiter: str | None = None, fields: bool = True, keep: int | None = None) -> ReadFile | Issue:
    """`keep`: only the first `keep` records keep their values (and any one-value line, which may be a report's
    footer); every other one is read, checked and counted, then kept as an empty record (the API's preview,
    which shows the first rows and counts the rest, so that its memory is that of those rows)."""
    delimiter = delimiter or detect_delimiter(text, limits.max_header_line)
    scan = _Scanner(text, delimiter)
    found = _read_header(scan, limits)
    if isinstance(found, Issue):
        return found
    header, after_header = found
    header = [clean_header_name(name) for name in header]
    matched = match_header(header, column_map) if fields else ({}, [])
    if isinstance(matched, Issue):
        return matched
    columns, header_warnings = matched
    rows = _read_rows(scan, after_header, limits, keep)
    if isinstance(rows, Issue):
        return rows
    records, lines, gaps = rows
    footer = report_footer(records, gaps, len(header))
    if footer:
        warnings = [*warnings, Issue(code="report_footer", message=(
            f"The last {footer} line{'s' if footer > 1 else ''} (from line {lines[-footer]} on, after a blank line) "
            "look like a report's footer (a copyright, “Generated By”), not clients: they were not imported."))]
        records, lines = records[:-footer], lines[:-footer]
    if not records:
        return refuse("no_records", "The file has a header but no client rows.")
    if delimiter != ",":
        warnings = [*warnings, Issue(code="delimiter", message=f"Columns are separated by {_DELIMITER_NAMES[delimiter]}s.")]
    return ReadFile(
        header=tuple(header),
        columns=columns,
        records=records,
        lines=lines,
        delimiter=delimiter,
        warnings=[*warnings, *header_warnings],
    )


def _read_header(scan: "_Scanner", limits: Limits) -> tuple[list[str], int] | Issue:
    """The first record that is not blank, within the header limits."""
    start = scan.skip_blank(0)
    if start == len(scan.text):
        return refuse("empty_file", "The file is empty.")
    line = scan.line_at(start)
    found = scan.record(start, limits.max_header_line)
    if isinstance(found, Issue):
        return found
    if found is None:
        return _header_too_long(scan.truncated(start, limits.max_header_line), line, limits)
    header, end = found
    if len(header) > limits.max_columns:
        return _too_many_columns(f"{len(header)}", limits)
    for number, name in enumerate(header, start=1):
        if len(name) > limits.max_header_chars:
            return refuse(
                "header_too_long",
                f"Column {number} of the header (“{_show(name)}”) is {len(name)} characters long; a column name "
                f"may have at most {limits.max_header_chars}. Check that line {line} is the header and that its "
                "quotes are closed.",
            )
    return header, end


def _header_too_long(cells: list[str], line: int, limits: Limits) -> Issue:
    """A header line too long to be within the limits: too many columns, or a name too long, or both."""
    if len(cells) > limits.max_columns:
        return _too_many_columns(f"more than {limits.max_columns}", limits)
    return refuse(
        "header_too_long",
        f"The header (line {line}) is longer than {limits.max_header_line} characters, too long for "
        f"{limits.max_columns} column names of at most {limits.max_header_chars} characters. "
        f"Check that line {line} is the header and that its quotes are closed.",
    )


def _too_many_columns(count: str, limits: Limits) -> Issue:
    return refuse(
        "too_many_columns",
        f"The header has {count} columns; at most {limits.max_columns} are allowed. Remove the columns you do not "
        "need, or check that the file is a CSV file.",
    )


_FOOTER = re.compile(r"copyright|confidential information|generated by|salesforce\.com", re.IGNORECASE)


def report_footer(records: list[list[str]], gaps: list[bool], columns: int) -> int:
    """How many of the last records are a report's footer: what Salesforce writes under a report's rows, after
    a blank line, one value a line (its copyright, "Confidential Information - Do Not Distribute", "Generated
    By: ...", the company's name). Only lines like those, after a blank line, at the file's end, under a header
    of several columns."""
    if columns < 2:
        return 0
    count = 0
    for cells in reversed(records):
        if len([c for c in cells if c.strip()]) != 1 or not cells[0].strip():
            return 0
        count += 1
        if gaps[len(records) - count]:
            break
    else:
        return 0
    return count if any(_FOOTER.search(cells[0]) for cells in records[-count:]) and count < len(records) else 0


def _read_rows(scan: "_Scanner", start: int, limits: Limits,
               keep: int | None = None) -> tuple[list[list[str]], list[int], list[bool]] | Issue:
    """The records after the header with the physical line each one starts on, and whether a blank line comes
    before it; blank ones are not records."""
    records: list[list[str]] = []
    lines: list[int] = []
    gaps: list[bool] = []
    pos = scan.skip_blank(start)
    gap = False
    while pos < len(scan.text):
        line = scan.line_at(pos)
        found = scan.record(pos, limits.max_record_chars)
        if found is None:
            return _record_too_long(line, limits)
        if isinstance(found, Issue):
            return found
        cells, pos = found
        # Blank lines and lines of bare delimiters (Excel pads with them) are not records; skip_blank passes
        # over them, and this catches any it did not recognise.
        if "".join(cells).strip():
            if len(cells) > limits.max_columns:
                return _too_many_values(line, len(cells), scan.delimiter, limits)
            if len(records) == limits.max_records:
                return _too_many_records(scan, pos, limits)
            records.append(cells if keep is None or len(records) < keep or _one_value(cells) else _DROPPED)
            lines.append(line)
            gaps.append(gap)
            gap = False
        else:
            gap = True
        after = scan.skip_blank(pos)
        gap, pos = gap or after > pos, after
    return records, lines, gaps


_DROPPED: list[str] = []  # a record read past `keep`: never changed, shared by all of them


def _one_value(cells: list[str]) -> bool:
    """Whether exactly one value is not blank: a line report_footer may take for a footer's (it looks at no other)."""
    seen = 0
    for cell in cells:
        if cell.strip():
            seen += 1
            if seen > 1:
                return False
    return seen == 1


def _record_too_long(line: int, limits: Limits) -> Issue:
    return refuse(
        "record_too_long",
        f"The record on line {line} is longer than {limits.max_record_chars} characters, the most one record may have. "
        "Check that its quotes are closed, or shorten its values.",
    )


def _too_many_values(line: int, count: int, delimiter: str, limits: Limits) -> Issue:
    return refuse(
        "too_many_columns",
        f"Line {line} has {count} values; a record may have at most {limits.max_columns}. A value probably contains "
        f"unquoted {_DELIMITER_NAMES[delimiter]}s: put quotes around it.",
    )


def _too_many_records(scan: "_Scanner", pos: int, limits: Limits) -> Issue:
    """Refused as soon as one record too many is read; the records after it are counted while that is cheap
    (at most as many again, without reading their cells) so the message can say how many there are."""
    counted = limits.max_records + 1
    ceiling = 2 * limits.max_records
    count = f"more than {ceiling}"
    while counted <= ceiling:
        pos = scan.skip_blank(pos)
        if pos == len(scan.text):
            count = f"{counted}"
            break
        end = scan.extent(pos, limits.max_record_chars)
        if end is None:  # a record we cannot measure: it is one more all the same
            count = f"more than {counted}"
            break
        counted, pos = counted + 1, end
    return refuse(
        "too_many_records",
        f"The file has {count} records; at most {limits.max_records} are allowed per file. "
        "Split it into smaller files.",
    )


@dataclass(frozen=True)
class _Grammar:
    """CSV as the csv module reads it (strict, doubled quotes, no escape character), for one delimiter."""

    blank_chars: re.Pattern  # whitespace, delimiters and line breaks: the cheap way over plain blank lines
    blank_records: re.Pattern  # records whose values are all blank, quoted ones included
    record: re.Pattern  # one record; group 1 is its line break (empty at the end of the text)


@lru_cache
def _grammar(delimiter: str) -> _Grammar:
    d = re.escape(delimiter)
    # Possessive quantifiers (*+, ++): nothing is ever tried twice, so every match is linear.
    blank_field = rf'(?:"\s*+"|[^\S\r\n{d}]*+)'
    # A quote opens a quoted value only as a value's first character; later ones are plain characters.
    value = rf'(?:"(?:[^"]++|"")*+"|[^"{d}\r\n][^{d}\r\n]*+|)'
    return _Grammar(
        blank_chars=re.compile(rf"[\s{d}]*+"),
        blank_records=re.compile(rf"(?:{blank_field}(?:{d}{blank_field})*+(?:\r\n|\r|\n|\Z))*+"),
        record=re.compile(rf"{value}(?:{d}{value})*+(\r\n|\r|\n|\Z)"),
    )


class _Scanner:
    """Walks the decoded text record by record, front to back.

    The regular expressions say where records end; the csv module, given one record's text at a time,
    says what its values are. Should the two ever disagree, the csv module decides.
    """

    def __init__(self, text: str, delimiter: str):
        self.text = text
        self.delimiter = delimiter
        self.grammar = _grammar(delimiter)
        self._line, self._counted = 1, 0

    def skip_blank(self, pos: int) -> int:
        """Where the next record that is not blank starts (the end of the text when none does)."""
        text, grammar = self.text, self.grammar
        while True:
            end = grammar.blank_chars.match(text, pos).end()
            if end == len(text):
                return end
            # `end` is on the first line with something else than blanks: from that line's start, skip
            # records that are blank all the same (`"",""`), if any.
            start = max(text.rfind("\n", pos, end) + 1, text.rfind("\r", pos, end) + 1, pos)
            after = grammar.blank_records.match(text, start).end()
            if after == start:
                return start
            pos = after

    def line_at(self, pos: int) -> int:
        """The physical line `pos` is on (CR, LF and CRLF each end one), for positions that never go back."""
        text, counted = self.text, self._counted
        self._line += text.count("\n", counted, pos) + text.count("\r", counted, pos) - text.count("\r\n", counted, pos)
        self._counted = pos
        return self._line

    def extent(self, pos: int, limit: int) -> int | None:
        """Where the record starting at `pos` ends, line break included; None when it is longer than `limit`
        characters or is not valid CSV."""
        window = min(len(self.text), pos + limit + 2)
        match = self.grammar.record.match(self.text, pos, window)
        # At the window's edge `\Z` matches too: only a real line break or the text's real end ends a record.
        if match and (match.group(1) or match.end() == len(self.text)) and match.start(1) - pos <= limit:
            return match.end()
        return None

    def record(self, pos: int, limit: int) -> tuple[list[str], int] | Issue | None:
        """The values of the record starting at `pos` and where it ends; None when it is longer than `limit`."""
        end = self.extent(pos, limit)
        if end is not None:
            reader, stream = self._reader(pos, end)
            try:
                cells = next(reader, [])
            except csv.Error:
                cells = None
            if cells is not None and pos + stream.tell() == end:
                return cells, end
        return self._diagnose(pos, limit)

    def truncated(self, pos: int, limit: int) -> list[str]:
        """As many of the values of an over-long record as its first `limit` characters hold."""
        reader, _ = self._reader(pos, min(len(self.text), pos + limit))
        try:
            return next(reader, [])
        except csv.Error:
            return []

    def _diagnose(self, pos: int, limit: int) -> tuple[list[str], int] | Issue | None:
        """What the csv module makes of a record the grammar found no end for within `limit` characters."""
        window = min(len(self.text), pos + limit + 2)
        reader, stream = self._reader(pos, window)
        try:
            cells = next(reader, [])
        except csv.Error as error:
            if "field limit" in str(error) or ("end of data" in str(error) and window < len(self.text)):
                return None  # a quote may close further on, but not within the limit
            if "end of data" in str(error):
                return refuse(
                    "unterminated_quote",
                    f"A quoted value that starts on line {self.line_at(pos)} never ends: a closing \" is missing.",
                )
            line = self.line_at(pos) + reader.line_num - 1
            return refuse("malformed_csv", f"Line {line} is not valid CSV ({error}).")
        end = pos + stream.tell()
        if end == window < len(self.text) or end - pos - _line_break_length(self.text, pos, end) > limit:
            return None
        return cells, end

    def _reader(self, start: int, end: int):
        stream = io.StringIO(self.text[start:end], newline="")
        return csv.reader(stream, delimiter=self.delimiter, strict=True), stream


def _line_break_length(text: str, start: int, end: int) -> int:
    if text.startswith("\r\n", max(start, end - 2), end):
        return 2
    return 1 if end > start and text[end - 1] in "\r\n" else 0


def show_value(value: str, limit: int = 40) -> str:
    """A value as a message quotes it (and the API's preview shows it): printable, and cut short. Control and
    invisible characters (line breaks, direction overrides...) become U+FFFD, so they cannot change how the
    text around them reads."""
    shown = "".join(c if c.isprintable() else "\ufffd" for c in value[: limit + 1])
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"


_show = show_value


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_NAMES_SHOWN])
    return shown if len(names) <= _NAMES_SHOWN else f"{shown} and {len(names) - _NAMES_SHOWN} more"


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"
