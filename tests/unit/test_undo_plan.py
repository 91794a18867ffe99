"""Undoing an import, planned: what the import's recorded changes do to the clients as they are now."""

from dataclasses import replace

from services.writer.changes import CHANGED_FIELDS, change_records
from services.writer.plan import Client, plan_writes
from services.writer.undo_plan import Change, plan_undo
from shared.events import Outcome

from .test_plan import ANN, BOB, pending


def created(client: Client, row: int = 1) -> Change:
    return Change(row=row, line=row + 1, email=client.email, client_id=client.id, before=None,
                  after={name: getattr(client, name) for name in CHANGED_FIELDS})


def updated(before: Client, after: Client, row: int = 2) -> Change:
    changed = [name for name in CHANGED_FIELDS if getattr(before, name) != getattr(after, name)]
    return Change(row=row, line=row + 1, email=before.email, client_id=before.id,
                  before={n: getattr(before, n) for n in changed}, after={n: getattr(after, n) for n in changed})


def by_id(*clients: Client) -> dict[str, Client]:
    return {c.id: c for c in clients}


def owners(*clients: Client) -> dict[str, str]:
    return {c.username: c.id for c in clients}


def outcomes(plan) -> list[str]:
    return [r.outcome.value for r in plan.results]


def test_a_client_the_import_created_and_nobody_changed_since_is_deleted():
    plan = plan_undo([created(BOB)], by_id(BOB), owners(BOB))

    assert outcomes(plan) == ["deleted"]
    assert plan.deletes == [BOB.id] and not plan.restores and not plan.conflicts


def test_a_client_the_import_updated_gets_its_earlier_values_back_for_the_fields_it_changed():
    after = replace(ANN, first_name="Annie", desk="D9")
    now = replace(after, project="Beta")  # a field the import did not change, changed since: not undo's business

    plan = plan_undo([updated(ANN, after)], by_id(now), owners(now))

    assert outcomes(plan) == ["restored"]
    assert plan.restores == {ANN.id: replace(now, first_name="Ann", desk="D1")}
    assert not plan.deletes and not plan.conflicts


def test_a_created_client_changed_since_is_kept_and_each_changed_field_is_a_conflict():
    now = replace(BOB, last_name="Smythe")

    plan = plan_undo([created(BOB)], by_id(now), owners(now))

    assert outcomes(plan) == ["conflict"]
    assert not plan.deletes and not plan.restores
    (conflict,) = plan.conflicts
    assert (conflict.field, conflict.now, conflict.would_delete) == ("last_name", "Smythe", True)
    assert "deleted the client" in conflict.issue.message


def test_an_updated_client_changed_since_in_some_fields_gets_the_others_back_and_the_rest_are_conflicts():
    after = replace(ANN, first_name="Annie", last_name="Lea", desk="D9")
    now = replace(after, last_name="Leigh")  # changed since by a later import

    plan = plan_undo([updated(ANN, after)], by_id(now), owners(now))

    assert outcomes(plan) == ["conflict"]
    assert plan.restores == {ANN.id: replace(now, first_name="Ann", desk="D1")}  # last_name left as it is now
    (conflict,) = plan.conflicts
    assert (conflict.field, conflict.now, conflict.undo_value, conflict.code) == ("last_name", "Leigh", "Lee",
                                                                                "changed_since")
    assert conflict.issue.message == "Changed since: it holds “Leigh”; undo would have written “Lee”. Left as it is."


def test_a_client_deleted_since_needs_nothing():
    after = replace(ANN, first_name="Annie")

    plan = plan_undo([created(BOB, row=1), updated(ANN, after, row=2)], {}, {})

    assert outcomes(plan) == ["unchanged", "unchanged"]
    assert not plan.deletes and not plan.restores and not plan.conflicts


def test_a_field_already_back_at_its_earlier_value_needs_nothing():
    after = replace(ANN, first_name="Annie")

    plan = plan_undo([updated(ANN, after)], by_id(ANN), owners(ANN))

    assert outcomes(plan) == ["unchanged"] and not plan.restores and not plan.conflicts


def test_an_earlier_username_another_client_took_since_is_a_conflict():
    after = replace(ANN, username="ann.lee", first_name="Annie")
    taker = replace(BOB, username="ann")

    plan = plan_undo([updated(ANN, after)], by_id(after, taker), owners(after, taker))

    assert outcomes(plan) == ["conflict"]
    assert plan.restores == {ANN.id: replace(after, first_name="Ann")}
    assert [(c.field, c.code) for c in plan.conflicts] == [("username", "username_taken")]


def test_a_username_given_back_once_is_taken_for_a_second_row_that_wants_it_too():
    # Ann went xname -> yname in the import; another import gave Bob xname; then the import's row 2 moved Bob
    # from xname to kname. Undo gives Ann xname back: Bob's earlier xname is hers again, not his as well.
    ann_after, bob_now = replace(ANN, username="yname"), replace(BOB, username="kname")
    rows = [updated(replace(ANN, username="xname"), ann_after, row=1),
            updated(replace(BOB, username="xname"), bob_now, row=2)]

    plan = plan_undo(rows, by_id(ann_after, bob_now), {})

    assert outcomes(plan) == ["restored", "conflict"]
    assert plan.restores == {ANN.id: replace(ann_after, username="xname")}
    assert [(c.row, c.code, c.now, c.undo_value) for c in plan.conflicts] == [(2, "username_taken", "kname", "xname")]


def test_a_username_given_up_by_a_give_back_is_free_for_a_later_row():
    # Ann went bname -> aname and Bob aname -> cname: undo gives Ann bname, which frees aname for Bob.
    ann_after, bob_after = replace(ANN, username="aname"), replace(BOB, username="cname")
    rows = [updated(replace(ANN, username="bname"), ann_after, row=1),
            updated(replace(BOB, username="aname"), bob_after, row=2)]

    plan = plan_undo(rows, by_id(ann_after, bob_after), {"aname": ANN.id})

    assert outcomes(plan) == ["restored", "restored"]
    assert [c.username for c in plan.restores.values()] == ["bname", "aname"]  # applied in this order


def test_a_username_held_by_a_client_the_undo_deletes_is_given_back():
    # Ann renamed herself ann -> ann.lee in row 1 and Bob, new in row 2, took `ann`: undo deletes Bob first.
    ann_after, bob = replace(ANN, username="ann.lee"), replace(BOB, username="ann")

    plan = plan_undo([updated(ANN, ann_after, row=1), created(bob, row=2)], by_id(ann_after, bob), owners(bob))

    assert [(r.row, r.outcome.value) for r in plan.results] == [(1, "restored"), (2, "deleted")]
    assert plan.restores == {ANN.id: replace(ann_after, username="ann")} and not plan.conflicts


def test_every_row_ends_in_exactly_one_outcome_in_row_order():
    after = replace(ANN, first_name="Annie")
    plan = plan_undo([updated(ANN, after, row=5), created(BOB, row=3)], by_id(after, BOB), owners(after, BOB))

    assert [(r.row, r.outcome) for r in plan.results] == [(3, Outcome.DELETED), (5, Outcome.RESTORED)]


# --- what the writer records, for undo -------------------------------------------------------------------


def test_the_writer_records_a_created_clients_values_and_an_updated_clients_changed_fields():
    rows = [pending(1, "new@x.com", first_name="Nia"), pending(2, ANN.email, first_name="Annie", desk="D9"),
            pending(3, BOB.email, first_name="Bob")]  # unchanged: nothing recorded
    existing = {c.email: c for c in (ANN, BOB)}
    plan = plan_writes(rows, existing, {c.username: c.email for c in (ANN, BOB)}, lambda: "new-1")

    records = change_records(plan.changes)

    assert [(r["row"], r["outcome"]) for r in records] == [(1, "created"), (2, "updated")]
    assert records[0]["before"] is None and records[0]["after"]["first_name"] == "Nia"
    assert records[0]["client_id"] == "new-1" and set(records[0]["after"]) == set(CHANGED_FIELDS)
    assert records[1]["before"] == {"first_name": "Ann", "desk": "D1"}
    assert records[1]["after"] == {"first_name": "Annie", "desk": "D9"}


def test_two_jobs_updating_one_client_in_one_batch_each_record_what_they_found():
    rows = [pending(1, ANN.email, first_name="Annie", job="job-1"), pending(1, ANN.email, first_name="Anna", job="job-2")]
    existing = {ANN.email: ANN}
    plan = plan_writes(rows, existing, {ANN.username: ANN.email}, lambda: "unused")

    records = change_records(plan.changes)

    assert [(r["job_id"], r["before"], r["after"]) for r in records] == [
        ("job-1", {"first_name": "Ann"}, {"first_name": "Annie"}),
        ("job-2", {"first_name": "Annie"}, {"first_name": "Anna"}),
    ]


def test_a_dry_run_records_nothing():
    from shared.events import ImportOptions

    rows = [pending(1, "new@x.com", options=ImportOptions(dry_run=True))]
    plan = plan_writes(rows, {}, {}, lambda: "new-1")

    assert change_records(plan.changes) == []
