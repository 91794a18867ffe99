"""The two reports a user downloads: errors.csv (fix and upload again) and results.csv.

Values that a spreadsheet would run as a formula are escaped with a leading ' (OWASP's advice),
whatever their source: a report never hands a formula to Excel.
"""

import csv
import io
from collections.abc import Iterable, Mapping

from shared.fields import EXAMPLE_ROWS, FIELDS
from shared.formulas import escape_formula

__all__ = ["errors_csv", "results_csv", "template_csv", "escape_formula"]

# The template shows the seed's columns: the fields with no default (project, desk and type have one).
TEMPLATE_COLUMNS = tuple(f.column for f in FIELDS if f.default is None)

BOM = "\ufeff"  # Excel opens UTF-8 CSV correctly only with it; our own reader accepts it


def errors_csv(rows: Iterable[Mapping]) -> str:
    """The rejected rows with their original columns as uploaded, then row, line and what was wrong."""
    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns += [name for name in (row["original"] or {}) if name not in columns]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([*columns, "row", "line", "errors"])
    for row in rows:
        original = row["original"] or {}
        problems = "; ".join(f"{e.get('field') or 'row'}: {e['message']} [{e['code']}]" for e in row["errors"] or ())
        writer.writerow([*(escape_formula(original.get(c, "")) for c in columns), row["row"], row["line"],
                         escape_formula(problems)])
    return BOM + out.getvalue()


def results_csv(rows: Iterable[Mapping]) -> str:
    """Each accepted row with the client it became and what happened to it."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    fields = ("row", "line", "email", "username", "client_id", "outcome")
    writer.writerow(fields)
    for row in rows:
        writer.writerow([escape_formula(row[f]) for f in fields])
    return BOM + out.getvalue()


def template_csv() -> str:
    """The seed's columns and its two example rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(TEMPLATE_COLUMNS)
    writer.writerows([example.get(column, "") for column in TEMPLATE_COLUMNS] for example in EXAMPLE_ROWS)
    return out.getvalue()
