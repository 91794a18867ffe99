"""Spreadsheet formula injection (OWASP): which values a spreadsheet would run, and how a report escapes them.

One list for the rules (which refuse such values on the way in) and the reports (which escape them
on the way out).
"""

__all__ = ["FORMULA_SIGNS", "FORMULA_START", "starts_formula", "escape_formula"]

FORMULA_SIGNS = ("=", "+", "-", "@")
FORMULA_START = (*FORMULA_SIGNS, "\t", "\r", "\n")


def starts_formula(text: str) -> bool:
    """Leading whitespace is no shelter: spreadsheets skip it."""
    return text[:1] in FORMULA_START or text.lstrip()[:1] in FORMULA_START


def escape_formula(value: object) -> str:
    """The value as a report cell: a leading ' keeps a spreadsheet from running it."""
    text = "" if value is None else str(value)
    return "'" + text if starts_formula(text) else text
