"""Deciding what undoing an import does to each client it wrote: pure, given what the database holds now.

The rule, field by field (the import's recorded changes, services/writer/changes.py):
- a client the import created is deleted, unless a value it was created with has changed since
  (another import that was not undone): then it is kept whole and each changed field is a conflict;
- a client the import updated gets back, for each field the import changed, the value it had before,
  when it still holds what the import wrote; a field that holds something else now was changed since
  by someone else: it is left as it is and is a conflict (what it holds now, what undo would write);
  a field already back at its earlier value needs nothing;
- a client that no longer exists needs nothing (`unchanged`);
- an earlier username that another client has taken since is a conflict too (usernames are unique).
  The plan keeps who holds each username as it goes: the clients it deletes free theirs first, and each
  username given back moves to its client (freeing the one it held), so two rows never get one name back.

Each row ends in exactly one outcome: `deleted`, `restored` (every changed field given back),
`conflict` (at least one field left as it is; the others are still given back) or `unchanged`.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from shared.events import Issue, Outcome, RowResult

from .plan import Client

__all__ = ["Change", "Conflict", "UndoPlan", "plan_undo"]


@dataclass(frozen=True)
class Change:
    """What one row of the import did, as recorded: `before` is None for a created client."""

    row: int
    line: int
    email: str
    client_id: str
    before: Mapping[str, str | None] | None
    after: Mapping[str, str | None]


@dataclass(frozen=True)
class Conflict:
    row: int
    field: str
    email: str
    client_id: str
    now: str | None  # what the client holds now
    undo_value: str | None  # what undo would have written
    code: str  # changed_since or username_taken
    would_delete: bool = False  # undo would have deleted the client (the import created it)

    @property
    def issue(self) -> Issue:
        return Issue(code=self.code, field=self.field, message=_message(self))


@dataclass
class UndoPlan:
    results: list[RowResult] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)  # client ids
    restores: dict[str, Client] = field(default_factory=dict)  # client id -> the client as undo leaves it
    conflicts: list[Conflict] = field(default_factory=list)


def plan_undo(changes: Iterable[Change], current: Mapping[str, Client], owners: Mapping[str, str]) -> UndoPlan:
    """`current`: client id -> the client now (absent: deleted since); `owners`: username -> client id, for
    every earlier username the changes could give back."""
    plan = UndoPlan()
    holders = dict(owners)  # kept up to date as the plan deletes and gives back, as the database will be
    ordered = sorted(changes, key=lambda c: c.row)
    # Deletes first (they are applied first): a username a deleted client held is free for a give-back.
    for change in (c for c in ordered if c.before is None):
        client = current.get(change.client_id)
        if client is None:
            plan.results.append(_result(change, Outcome.UNCHANGED))
        else:
            _undo_create(plan, change, client)
    gone = set(plan.deletes)
    holders = {name: holder for name, holder in holders.items() if holder not in gone}
    for change in (c for c in ordered if c.before is not None):
        client = current.get(change.client_id)
        if client is None:
            plan.results.append(_result(change, Outcome.UNCHANGED))
        else:
            _undo_update(plan, change, plan.restores.get(client.id, client), holders)
    plan.results.sort(key=lambda r: r.row)
    return plan


def _undo_create(plan: UndoPlan, change: Change, client: Client) -> None:
    since = [name for name, value in change.after.items() if getattr(client, name) != value]
    if not since:
        plan.deletes.append(client.id)
        plan.results.append(_result(change, Outcome.DELETED))
        return
    found = [Conflict(change.row, name, change.email, client.id, getattr(client, name), None, "changed_since",
                      would_delete=True) for name in since]
    plan.conflicts += found
    plan.results.append(_result(change, Outcome.CONFLICT, found))


def _undo_update(plan: UndoPlan, change: Change, client: Client, owners: dict[str, str]) -> None:
    given_back: dict[str, str | None] = {}
    found: list[Conflict] = []
    for name, written in change.after.items():
        now, earlier = getattr(client, name), change.before.get(name)
        if now == earlier:
            continue  # already back
        if now != written:
            found.append(Conflict(change.row, name, change.email, client.id, now, earlier, "changed_since"))
        elif name == "username" and owners.get(earlier, client.id) != client.id:
            found.append(Conflict(change.row, name, change.email, client.id, now, earlier, "username_taken"))
        else:
            given_back[name] = earlier
    if "username" in given_back:
        if owners.get(client.username) == client.id:
            del owners[client.username]  # the name it gives up is free for a later row
        if given_back["username"] is not None:
            owners[given_back["username"]] = client.id
    if given_back:
        plan.restores[client.id] = replace(client, **given_back)
    plan.conflicts += found
    outcome = Outcome.CONFLICT if found else Outcome.RESTORED if given_back else Outcome.UNCHANGED
    plan.results.append(_result(change, outcome, found))


def _result(change: Change, outcome: Outcome, conflicts: Iterable[Conflict] = ()) -> RowResult:
    return RowResult(row=change.row, line=change.line, outcome=outcome, email=change.email, client_id=change.client_id,
                     errors=tuple(c.issue for c in conflicts))


def _message(conflict: Conflict) -> str:
    if conflict.code == "username_taken":
        return (f"The username {conflict.undo_value} it had before now belongs to another client: it keeps "
                f"{conflict.now}.")
    would = "deleted the client" if conflict.would_delete else f"written {_shown(conflict.undo_value)}"
    return f"Changed since: it holds {_shown(conflict.now)}; undo would have {would}. Left as it is."


def _shown(value: str | None) -> str:
    return "nothing" if value is None else f"“{value}”"
