"""Spreadsheet formula injection (OWASP): which values a spreadsheet would run, and how a report escapes them.

One decision, `formula_sign`, for the rule (which refuses such values on the way in) and the reports
(which escape every cell on the way out, header cells included).

A spreadsheet runs a cell that starts with `= + - @`, or with a tab, CR or LF. Spreadsheets in some
locales also take the full-width and other compatibility forms of those signs (`＝ ＋ － ＠`, small
`﹦ ﹢ ﹣ ﹫`: every character whose Unicode compatibility form, NFKC, is one of them), and they skip
leading whitespace, so the sign counts after any leading whitespace or invisible character too
(no-break and ideographic spaces, zero-width and bidi format characters, control characters,
variation selectors, blank fillers).
"""

import unicodedata

__all__ = ["ESCAPE", "FORMULA_SIGNS", "LINE_STARTS", "formula_sign", "starts_formula", "escape_formula"]

FORMULA_SIGNS = frozenset("=+-@\u2212")  # U+2212 MINUS SIGN, the compatibility form of ⁻ and ₋
LINE_STARTS = frozenset("\t\r\n")  # a formula on its own, whatever follows (OWASP)
ESCAPE = "'"  # what a spreadsheet shows as text and never runs

# Letters and marks that render as nothing (Unicode's default-ignorable code points outside the
# format category, and the braille blank): a spreadsheet shows the sign behind them first.
_BLANK = frozenset("\u034f\u115f\u1160\u17b4\u17b5\u180b\u180c\u180d\u180e\u180f\u2800\u3164\uffa0")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn"})


def formula_sign(text: str) -> str | None:
    """The character that would make a spreadsheet run `text` as a formula, or None when it is plain text."""
    for char in text:
        if char in LINE_STARTS:
            return char
        if _is_sign(char):
            return char
        if not _invisible(char):
            return None
    return None


def starts_formula(text: str) -> bool:
    return formula_sign(text) is not None


def escape_formula(value: object) -> str:
    """The value as a report cell: a leading ' keeps a spreadsheet from running it."""
    text = "" if value is None else str(value)
    return ESCAPE + text if starts_formula(text) else text


def _is_sign(char: str) -> bool:
    return char in FORMULA_SIGNS or (not char.isascii() and unicodedata.normalize("NFKC", char)[:1] in FORMULA_SIGNS)
    # ([:1]: a character whose form is several, such as ⩵ for "==", starts with the sign all the same)


def _invisible(char: str) -> bool:
    if char.isascii():
        return char.isspace() or not char.isprintable()
    category = unicodedata.category(char)
    # Mn: only the selectors and joiners that change nothing visible; a combining accent is shown.
    if category == "Mn":
        return char in _BLANK or "\ufe00" <= char <= "\ufe0f" or "\U000e0100" <= char <= "\U000e01ef"
    return category in _INVISIBLE_CATEGORIES or char in _BLANK
