"""Deciding what each accepted row does to the clients: pure, given what the database already holds.

Rows are applied in the order they came, against the state the earlier rows left, so one batch
holding the same email twice (two jobs, say) ends as if they had been applied one at a time.
"""

import re
import unicodedata
from collections import ChainMap
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import NamedTuple

from shared.events import AcceptedRow, ClientValues, ImportOptions, Issue, Mode, Outcome, RowResult
from shared.fields import DEFAULT, FIELDS, USERNAME_MAX

_SUFFIX_ROOM = 6
# Read once: on Python 3.11 each `Outcome.X` is a property lookup, and these are read for every row.
_CREATED, _UPDATED, _UNCHANGED, _REJECTED = Outcome.CREATED, Outcome.UPDATED, Outcome.UNCHANGED, Outcome.REJECTED


@dataclass(frozen=True)
class Client:
    id: str
    email: str
    username: str
    first_name: str
    middle_name: str | None
    last_name: str | None
    project: str
    desk: str
    type: str


@dataclass(frozen=True)
class PendingRow:
    job_id: str
    options: ImportOptions
    row: AcceptedRow


class Change(NamedTuple):
    """What one created or updated row did to its client: `before` is None for a created one."""

    job_id: str
    result: RowResult
    before: Client | None
    after: Client


@dataclass
class Plan:
    results: list[tuple[str, RowResult]] = field(default_factory=list)
    created: dict[str, Client] = field(default_factory=dict)
    updated: dict[str, Client] = field(default_factory=dict)
    # Each row that changes a client, in order: undo's record of it (changes.py). Two rows of one email
    # in a batch (two jobs) each have what they found.
    changes: list[Change] = field(default_factory=list)

    @property
    def upserts(self) -> list[Client]:
        # Updates first: one may give up a username that a created client takes.
        return [*self.updated.values(), *self.created.values()]


def plan_writes(
    rows: Iterable[PendingRow],
    existing: dict[str, Client],
    usernames: dict[str, str],
    new_id: Callable[[], str],
) -> Plan:
    """`existing`: email -> client; `usernames`: username -> owner's email, for every username the rows might touch."""
    plan = Plan()
    clients: MutableMapping[str, Client] = dict(existing)
    owners: MutableMapping[str, str | None] = dict(usernames)
    dry_runs: dict[str, tuple[ChainMap, ChainMap]] = {}
    for pending in rows:
        state = (clients, owners)
        if pending.options.dry_run:
            # A dry run sees the real state and its own earlier rows, and changes nothing else.
            state = dry_runs.setdefault(pending.job_id, (ChainMap({}, clients), ChainMap({}, owners)))
        result, client, before = _apply(pending, *state, new_id)
        plan.results.append((pending.job_id, result))
        if client is None or pending.options.dry_run or result.outcome is _UNCHANGED:
            continue
        plan.changes.append(Change(pending.job_id, result, before, client))
        created_here = result.outcome is _CREATED or client.email in plan.created
        (plan.created if created_here else plan.updated)[client.email] = client
    return plan


def _apply(
    pending: PendingRow,
    clients: MutableMapping[str, Client],
    owners: MutableMapping[str, str | None],
    new_id: Callable[[], str],
) -> tuple[RowResult, Client | None, Client | None]:
    """The row's result, the client it leaves (None when rejected) and the client it found."""
    row, values, mode = pending.row, pending.row.values, pending.options.mode
    current = clients.get(values.email)
    refusal = _refusal(values, current, owners, mode)
    if refusal:
        return _result(row, _REJECTED, errors=(refusal,), original=row.original), None, current
    if current is None:
        username = values.username or free_username(username_base(values), lambda name: owners.get(name) is not None)
        client = new_client(new_id(), values, username)
        outcome = _CREATED
    else:
        client = merge(current, values)
        outcome = _UNCHANGED if client == current else _UPDATED
        if client.username != current.username:
            owners[current.username] = None  # freed (a dry run's layer cannot pop what lies below it)
    clients[client.email] = client
    owners[client.username] = client.email
    return _result(row, outcome, client=client), client, current


def _refusal(
    values: ClientValues, current: Client | None, owners: MutableMapping[str, str | None], mode: Mode
) -> Issue | None:
    if current is not None and mode is Mode.CREATE_ONLY:
        return Issue(
            code="already_exists",
            field="email",
            message=f"A client with the email {values.email} already exists, and this import only creates new clients.",
        )
    if current is None and mode is Mode.UPDATE_ONLY:
        return Issue(
            code="not_found",
            field="email",
            message=f"No client has the email {values.email}, and this import only updates existing clients.",
        )
    owner = owners.get(values.username) if values.username else None
    if owner is not None and owner != values.email:
        return Issue(
            code="username_taken",
            field="username",
            message=f"The username {values.username} already belongs to another client: choose another or leave it empty.",
        )
    return None


def new_client(client_id: str, values: ClientValues, username: str) -> Client:
    """Every field as given, else its default (shared/fields.py). Spelled out: it runs once per new client,
    and a loop over the fields cost more than the rest of the row's planning (tests/unit/test_plan.py
    checks every field with a default is defaulted here)."""
    return Client(
        id=client_id, email=values.email, username=username, first_name=values.first_name,
        middle_name=values.middle_name or _DEFAULT_MIDDLE, last_name=values.last_name or _DEFAULT_LAST,
        project=values.project or _DEFAULT_PROJECT, desk=values.desk or _DEFAULT_DESK, type=values.type or _DEFAULT_TYPE,
    )


_DEFAULT_MIDDLE, _DEFAULT_LAST = DEFAULT.middle_name, DEFAULT.last_name
_DEFAULT_PROJECT, _DEFAULT_DESK, _DEFAULT_TYPE = DEFAULT.project, DEFAULT.desk, DEFAULT.type


def merge(current: Client, values: ClientValues) -> Client:
    """Given values overwrite; empty cells and absent columns keep what the client has."""
    return replace(current, **{f.key: value for f in FIELDS if f.key != "email" and (value := getattr(values, f.key))})


def username_base(values: ClientValues) -> str:
    """From the email's local part, else the names, else 'client': lower-case ASCII letters, digits, . _ -"""
    return _username_base(values.email, values.first_name, values.last_name)


@lru_cache(maxsize=16384)  # asked for twice per new client: once to look up the taken names, once to pick
def _username_base(email: str, first_name: str, last_name: str | None) -> str:
    base = _base_of(email.rsplit("@", 1)[0])
    if len(base) < 3:  # the names are joined only when the email's local part will not do
        base = _base_of(".".join(n for n in (first_name, last_name) if n))
    return base if len(base) >= 3 else "client"


_BASE_MAX = USERNAME_MAX - _SUFFIX_ROOM
# A text that is already its own base: lower-case letters and digits, single separators between them.
_PLAIN_BASE = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")


def _base_of(text: str) -> str:
    # Most local parts need nothing taken out: one match instead of two substitutions, a strip and
    # a slice (a property test holds the shortcut to the full recipe's answer).
    if text.isascii() and len(text) <= _BASE_MAX and _PLAIN_BASE.fullmatch(lowered := text.lower()):
        return lowered
    return _slug(text)[:_BASE_MAX].strip("._-")


def free_username(base: str, taken: Callable[[str], bool]) -> str:
    """The base itself, else the smallest free numeric suffix: ann, ann1, ann2, ..."""
    if not taken(base):
        return base
    suffix = 1
    while taken(f"{base}{suffix}"):
        suffix += 1
    return f"{base}{suffix}"


def username_range(base: str) -> tuple[str, str]:
    """Bounds (inclusive, exclusive) holding the base and every base+digits name, for one index range scan."""
    return base, base + ":"  # ':' sorts right after '9'


_NOT_IN_SLUG, _SEPARATOR_RUN = re.compile(r"[^a-z0-9._-]"), re.compile(r"[._-]{2,}")


def _slug(text: str) -> str:
    if not text.isascii():  # ASCII text is its own NFKD form
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return _SEPARATOR_RUN.sub(".", _NOT_IN_SLUG.sub("", text.lower()))


def _result(
    row: AcceptedRow, outcome: Outcome, client: Client | None = None, errors=(), original: dict | None = None
) -> RowResult:
    # Every field given: no default factory runs per row.
    return RowResult(
        row=row.row,
        line=row.line,
        outcome=outcome,
        email=row.values.email,
        client_id=client.id if client else None,
        username=client.username if client else None,
        errors=errors,
        original=original or {},
    )
