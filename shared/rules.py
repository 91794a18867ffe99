"""The row rules: what makes a row of a client file acceptable, and its normalised values.

Plain functions over plain data. Each broken rule is an Issue with a stable code and a message a
person can act on; a row collects all of its issues at once, so it is fixed in one go. The validator
checks every row with them; the API's preview (POST /imports/preview) checks a file's first rows with them.
"""

import csv
import io
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from shared.events import AcceptedRow, Chunk, ClientValues, Issue, RejectedRow
from shared.fields import (
    CLIENT_TYPES,
    EMAIL_MAX,
    FIELDS,
    FULL_NAME,
    UNIQUE,
    USERNAME_MAX,
    USERNAME_MIN,
    ClientField,
    split_full_name,
)
from shared.formulas import ESCAPE, formula_sign
from shared.reading import ReadFile

USERNAME_PATTERN = re.compile(rf"[A-Za-z0-9._-]{{{USERNAME_MIN},{USERNAME_MAX}}}")
_MARKUP = re.compile(r"<\s*[a-zA-Z!/?]|javascript\s*:", re.IGNORECASE)
_INVISIBLE = {"\u202a", "\u202b", "\u202c", "\u202d", "\u202e", "\u2066", "\u2067", "\u2068", "\u2069"}


@dataclass(frozen=True)
class RowRules:
    client_types: tuple[str, ...] = CLIENT_TYPES


def validate_chunk(chunk: Chunk, rules: RowRules = RowRules()) -> tuple[list[AcceptedRow], list[RejectedRow]]:
    reader = csv.reader(io.StringIO(chunk.csv, newline=""))
    header = next(reader)
    accepted: list[AcceptedRow] = []
    rejected: list[RejectedRow] = []
    for offset, cells in enumerate(reader):
        row = chunk.row_number(offset)
        if row in chunk.refused:  # the uploader's answer (a retry's row the original did not reject): no check
            rejected.append(RejectedRow(row=row, line=chunk.lines[offset], errors=(chunk.refused[row],),
                                        original=original_values(cells, header)))
            continue
        result = check_row(
            cells, header, chunk.columns, row=row, line=chunk.lines[offset], repeat=chunk.repeats.get(row), rules=rules
        )
        (accepted if isinstance(result, AcceptedRow) else rejected).append(result)
    return accepted, rejected


def original_values(cells: list[str], header: list[str]) -> dict[str, str]:
    """A row's values as uploaded, by column name (an unnamed column is "column N")."""
    return {name or f"column {i + 1}": (cells[i] if i < len(cells) else "") for i, name in enumerate(header)}


def check_row(
    cells: list[str],
    header: list[str],
    columns: dict[str, int],
    *,
    row: int,
    line: int,
    repeat: tuple[str, int] | None = None,
    rules: RowRules = RowRules(),
) -> AcceptedRow | RejectedRow:
    original = original_values(cells, header)
    raw = raw_values(cells, columns)
    errors = [*_extra_values(cells, header)]
    for name, value in raw.items():
        errors.extend(check_safe(name, value))
    values = given_values(raw)
    fields = _check_fields(values, rules)
    errors.extend(issue for issue in fields if isinstance(issue, Issue))
    if repeat:
        errors.append(_repeat_issue(repeat, values))
    if errors:
        return RejectedRow(row=row, line=line, errors=tuple(errors), original=original)
    client = ClientValues(**dict(fields))  # no Issue left among them here
    return AcceptedRow(row=row, line=line, values=client, original=original)


def raw_values(cells: list[str], columns: dict[str, int]) -> dict[str, str]:
    """Each mapped column's cell, by its field (a short row's missing cells are empty)."""
    return {name: (cells[i] if i < len(cells) else "") for name, i in columns.items()}


def given_values(raw: dict[str, str]) -> dict[str, str]:
    """The values the rules check, by field: trimmed and NFC, a whole name split into its parts."""
    values = {name: clean(value) for name, value in raw.items()}
    if FULL_NAME in values:  # a whole-name column gives the name fields no column of the file gives
        values = {**split_full_name(values.pop(FULL_NAME)), **values}
    return values


def clean(value: str) -> str:
    return unicodedata.normalize("NFC", value.strip())


def check_safe(name: str, value: str) -> Iterable[Issue]:
    """Values a spreadsheet would run, markup, and control characters never get in."""
    if _PLAIN_TEXT.fullmatch(value):  # nearly every value: nothing below could object to it
        return ()
    return tuple(_unsafe(name, value))


# Starts with a letter or digit (no formula: the sign must come first), holds no '<' or ':' (no markup),
# and only printable ASCII (no control or invisible character). tests/unit/test_rules.py checks that the
# full check finds nothing in any such value.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._@'+-]*")


def _unsafe(name: str, value: str) -> Iterable[Issue]:
    trimmed = value.strip()
    if not trimmed:
        return
    # A formula escaped by our own reports ('=...) comes back unfixed when errors.csv is re-uploaded.
    sign = formula_sign(value) or (formula_sign(trimmed[1:]) if trimmed.startswith(ESCAPE) else None)
    if sign:
        yield Issue(
            code="formula_injection",
            field=name,
            message=f"The {name} value “{_show(trimmed)}” starts with {sign!r}, which a spreadsheet would run "
            "as a formula: remove that character.",
        )
    if _MARKUP.search(trimmed):
        yield Issue(
            code="markup_content",
            field=name,
            message=f"The {name} value “{_show(trimmed)}” contains HTML or script markup, which is not allowed.",
        )
    # isprintable() is False for every control and format character: the scan runs only then.
    if not trimmed.isprintable() and any(unicodedata.category(c) == "Cc" or c in _INVISIBLE for c in trimmed):
        yield Issue(
            code="control_characters",
            field=name,
            message=f"The {name} value contains line breaks, tabs or other invisible control characters: "
            "keep it on one line of plain text.",
        )


def _check_fields(values: dict[str, str], rules: RowRules) -> list[tuple[str, str | None] | Issue]:
    """Each field's normalised value as (key, value), or the Issue that stops it: the rule of its kind."""
    return [_CHECKS[f.kind](f, values.get(f.column, ""), rules) for f in FIELDS]


def _email(field: ClientField, value: str, _rules: RowRules) -> tuple[str, str] | Issue:
    if not value:
        return Issue(code="missing_email", field=field.column, message="The email is empty; every client needs one.")
    if len(value) > field.max_length:
        return Issue(
            code="email_too_long", field=field.column, message=f"The email is {len(value)} characters; at most {field.max_length}."
        )
    normalized, problem = _normalized_email(value)
    if problem:
        return Issue(code="invalid_email", field=field.column,
                     message=f"“{_show(value)}” is not a valid email address: {_show(problem, 300)}")
    return (field.key, normalized.lower())


# Plain ASCII addresses (nearly all of them) are checked in two parts: the local part by a strict
# dot-atom pattern, the domain by email-validator once per distinct domain. Anything else goes
# through email-validator whole. The answer is email-validator's own, address for address
# (tests/unit/test_rules_email.py checks it against email-validator over tricky and generated addresses).
_PLAIN_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


def _normalized_email(value: str) -> tuple[str, str | None]:
    local, at, domain = value.rpartition("@")
    # Punycode domains take the long road: email-validator turns them into their Unicode form.
    if at and value.isascii() and "xn--" not in domain.lower() and len(local) <= 64 and _PLAIN_LOCAL.fullmatch(local):
        return value, _domain_problem(domain.lower())
    try:
        return validate_email(value, check_deliverability=False).normalized, None
    except EmailNotValidError as error:
        return value, str(error)


@lru_cache(maxsize=4096)
def _domain_problem(domain: str) -> str | None:
    # The shortest local part: the whole address's length is checked before (at most 254), and a longer
    # probe such as postmaster@ would fail that check for a domain the real address may have.
    try:
        validate_email(f"a@{domain}", check_deliverability=False)
    except EmailNotValidError as error:
        return str(error)
    return None


def _name(field: ClientField, value: str, _rules: RowRules) -> tuple[str, str | None] | Issue:
    column, key = field.column, field.key
    if not value:
        if field.required:
            return Issue(
                code="missing_first_name", field=column, message="The first name is empty; every client needs one."
            )
        return (key, None)
    if len(value) > field.max_length:
        return Issue(
            code="name_too_long",
            field=column,
            message=f"The {field.label} is {len(value)} characters long; at most {field.max_length} are allowed.",
        )
    return (key, value)


def _username(field: ClientField, value: str, _rules: RowRules) -> tuple[str, str | None] | Issue:
    if not value:
        return (field.key, None)
    if not USERNAME_PATTERN.fullmatch(value):
        return Issue(
            code="invalid_username",
            field=field.column,
            message=f"The username “{_show(value)}” must be {USERNAME_MIN} to {USERNAME_MAX} letters, digits, dots, "
            "underscores or hyphens.",
        )
    return (field.key, value.lower())


def _label(field: ClientField, value: str, _rules: RowRules) -> tuple[str, str | None] | Issue:
    if len(value) > field.max_length:
        return Issue(code="value_too_long", field=field.column,
                     message=f"The {field.label} is {len(value)} characters; at most {field.max_length}.")
    return (field.key, value or None)


def _type(field: ClientField, value: str, rules: RowRules) -> tuple[str, str | None] | Issue:
    if not value:
        return (field.key, None)
    if value.lower() not in rules.client_types:
        return Issue(
            code="invalid_type",
            field=field.column,
            message=f"The {field.label} “{_show(value)}” is not one of: {', '.join(rules.client_types)}.",
        )
    return (field.key, value.lower())


_CHECKS = {"address": _email, "name": _name, "login": _username, "label": _label, "choice": _type}


def _extra_values(cells: list[str], header: list[str]) -> Iterable[Issue]:
    extra = [c for c in cells[len(header) :] if c.strip()]
    if extra:
        yield Issue(
            code="too_many_fields",
            message=f"The row has {len(header) + len(extra)} values but the header names {len(header)} columns: "
            "a value probably contains an unquoted delimiter.",
        )


def email_key(value: str) -> str:
    """The email as the validator stores it, when it is valid: two rows repeat each other exactly when they
    would be the same client (an ideographic full stop, a full-width letter or a punycode domain included)."""
    key = clean(value)
    if key and len(key) <= EMAIL_MAX:  # bounds email-validator's work, as the rule itself does
        normalized, problem = _normalized_email(key)
        if problem is None:
            return normalized.lower()
    return repeat_key(value)


def repeat_key(value: str) -> str:
    """Case-insensitive, and one key for the Unicode and the punycode (xn--) spelling of a domain."""
    key = unicodedata.normalize("NFC", value.strip()).lower()
    local, at, domain = key.rpartition("@")
    # Only a domain that could be real is decoded: IDNA decoding is quadratic in a label's length.
    if at and "xn--" in domain and len(domain) <= 253 and all(len(label) <= 63 for label in domain.split(".")):
        try:
            key = f"{local}@{domain.encode('ascii').decode('idna')}"
        except UnicodeError:
            pass
    return key


def find_repeats(read: ReadFile) -> dict[int, tuple[str, int]]:
    """Row number -> (field, first row) for each later row that reuses an email or a given username.

    Only the uploader (and the API's preview) sees the whole file, so it is the one to say which row came first.
    """
    repeats: dict[int, tuple[str, int]] = {}
    for field_name in UNIQUE:
        column = read.columns.get(field_name)
        if column is None:
            continue
        first_seen: dict[str, int] = {}
        key_of = email_key if field_name == "email" else repeat_key
        for row, cells in enumerate(read.records, start=1):
            key = key_of(cells[column]) if column < len(cells) else ""
            if not key:
                continue
            if key in first_seen:
                repeats.setdefault(row, (field_name, first_seen[key]))
            else:
                first_seen[key] = row
    return repeats


def _repeat_issue(repeat: tuple[str, int], values: dict[str, str]) -> Issue:
    field_name, first_row = repeat
    if field_name == "email":
        return Issue(
            code="duplicate_email",
            field="email",
            message=f"The email {_show(values.get('email', ''))} is already in row {first_row} of this file; "
            "only that first row is imported.",
        )
    return Issue(
        code="duplicate_username",
        field="username",
        message=f"The username {_show(values.get('username', ''))} is already in row {first_row} of this file; "
        "only that first row gets it.",
    )


def _show(value: str, limit: int = 60) -> str:
    shown = "".join(c if c.isprintable() else "\ufffd" for c in value)
    return shown if len(shown) <= limit else shown[: limit - 1] + "…"
