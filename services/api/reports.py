"""The two reports a user downloads: errors.csv (fix and upload again) and results.csv.

Every cell that a spreadsheet would run as a formula is escaped with a leading ' (OWASP's advice),
header cells included and whatever its source: a report never hands a formula to Excel.
"""

import csv
import io
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import quote

from shared.fields import EXAMPLE_ROWS, FIELDS
from shared.formulas import escape_formula

__all__ = ["errors_csv", "results_csv", "conflicts_csv", "template_csv", "escape_formula", "download_name", "content_disposition",
           "NAME_MAX"]

# The template shows the seed's columns: the fields with no default (project, desk and type have one).
TEMPLATE_COLUMNS = tuple(f.column for f in FIELDS if f.default is None)

BOM = "\ufeff"  # Excel opens UTF-8 CSV correctly only with it; our own reader accepts it


def errors_csv(rows: Iterable[Mapping]) -> str:
    """The rejected rows with their original columns as uploaded, then row, line and what was wrong."""
    rows = list(rows)
    # In order of first appearance; a dict, since a list's `in` made 5000 rows of 500 columns take 10 s.
    columns = list(dict.fromkeys(name for row in rows for name in row["original"] or ()))
    out, write = _report_writer()
    write([*columns, "row", "line", "errors"])  # the uploaded column names are the user's text too
    for row in rows:
        original = row["original"] or {}
        problems = "; ".join(f"{e.get('field') or 'row'}: {e['message']} [{e['code']}]" for e in row["errors"] or ())
        write([*(original.get(c, "") for c in columns), row["row"], row["line"], problems])
    return BOM + out.getvalue()


def results_csv(rows: Iterable[Mapping]) -> str:
    """Each accepted row with the client it became and what happened to it."""
    out, write = _report_writer()
    fields = ("row", "line", "email", "username", "client_id", "outcome")
    write(fields)
    for row in rows:
        write([row[f] for f in fields])
    return BOM + out.getvalue()


CONFLICT_COLUMNS = ("row", "email", "client_id", "field", "now", "undo_would_write", "reason")


def conflicts_csv(rows: Iterable[Mapping]) -> str:
    """An undo's conflicts: each field of a client changed since the import it undid, left as it is: what the
    client holds now, and what undo would have written (the client deleted, for one the import created)."""
    out, write = _report_writer()
    write(CONFLICT_COLUMNS)
    for row in rows:
        would = "(client deleted)" if row["would_delete"] else row["undo_value"]
        write([row["row"], row["email"], row["client_id"], row["field"], row["now"], would, row["code"]])
    return BOM + out.getvalue()


def _report_writer() -> tuple[io.StringIO, Callable[[Iterable[object]], None]]:
    """A CSV writer that escapes every cell it writes, header cells included: no cell reaches a spreadsheet
    as a formula, whatever it holds. Every cell is quoted too: a spreadsheet that splits lines on `;`
    (Excel where that is the list separator) keeps `Ann;=1+1` one cell instead of making `=1+1` another."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n", quoting=csv.QUOTE_ALL)
    return out, lambda cells: writer.writerow([escape_formula(cell) for cell in cells])


def template_csv() -> str:
    """The seed's columns and its two example rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_COLUMNS)
    writer.writerows([example.get(column, "") for column in TEMPLATE_COLUMNS] for example in EXAMPLE_ROWS)
    return out.getvalue()


# --- download names ---------------------------------------------------------------------------------------
# A report is named after the uploaded file, which is anyone's text. The name a browser saves is built from
# it in two forms (RFC 6266): `filename*=UTF-8''...` percent-encoded (RFC 5987), which every current browser
# reads, and a plain ASCII `filename="..."` for the others. Neither form carries a quote, a backslash, a
# control or format character (CR, LF, NUL, bidi overrides), a path separator, or anything but ASCII, so
# the header cannot be broken or extended, and the saved name always ends in the report's own suffix.

NAME_MAX = 60  # characters kept of the uploaded name's stem: at 4 UTF-8 bytes each, plus the suffix, within the
# 255 bytes a file system takes for a name
FALLBACK_STEM = "import"  # when nothing of the uploaded name is left
_DROPPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})  # control, format, surrogate, private, unassigned
_REPLACED = frozenset('"\\/:*?<>|')  # quotes, path separators, and what Windows refuses in a file name
_NOT_PLAIN_ASCII = re.compile(r"[^A-Za-z0-9 ._()+,=@\[\]{}~#&!^'-]+")  # replaced in the ASCII fallback (% too:
# some clients percent-decode `filename=`)
_EDGES = " ._-"  # a name neither hidden (leading dot) nor trimmed by Windows (trailing dot or space)


def download_name(name: str, suffix: str) -> str:
    """What a browser should save: the uploaded name's visible text, bounded, then `suffix` (`-errors.csv`)."""
    stem = name[: -len(suffix)] if suffix and name.endswith(suffix) else name
    return (_visible_stem(stem) or FALLBACK_STEM) + suffix


def content_disposition(name: str, suffix: str) -> str:
    """The `Content-Disposition` value for a download of `name`: pure ASCII, whatever `name` holds."""
    full = download_name(name, suffix)
    return f"attachment; filename=\"{_ascii_fallback(full, suffix)}\"; filename*=UTF-8''{quote(full, safe='')}"


def _visible_stem(stem: str) -> str:
    kept = []
    for char in unicodedata.normalize("NFC", stem):
        if char.isspace():  # tab, CR, LF, line separators too: a space, so words stay apart
            kept.append(" ")
        elif unicodedata.category(char) not in _DROPPED:
            kept.append("_" if char in _REPLACED else char)
    visible = " ".join("".join(kept).split()).strip(_EDGES)
    return visible[:NAME_MAX].strip(_EDGES)


def _ascii_fallback(full: str, suffix: str) -> str:
    """`full` in plain ASCII for clients that do not read `filename*`: accents dropped (é -> e), the rest `_`."""
    decomposed = unicodedata.normalize("NFKD", full[: len(full) - len(suffix)])
    bare = "".join(char for char in decomposed if unicodedata.category(char) != "Mn")
    stem = re.sub("_+", "_", _NOT_PLAIN_ASCII.sub("_", bare)).strip(_EDGES)
    return (stem or FALLBACK_STEM) + suffix
