"""The writer's plan: what each accepted row does to the clients, given what the database holds."""

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.writer import plan as plan_module
from services.writer.plan import (
    Client,
    PendingRow,
    free_username,
    merge,
    new_client,
    plan_writes,
    username_base,
)
from shared.events import AcceptedRow, ClientValues, ImportOptions, Mode, Outcome

ANN = Client(id="c-ann", email="ann@x.com", username="ann", first_name="Ann", middle_name="M", last_name="Lee",
             project="Alpha", desk="D1", type="corporate")
BOB = Client(id="c-bob", email="bob@x.com", username="bob", first_name="Bob", middle_name=None, last_name="Smith",
             project="default", desk="default", type="personal")


def pending(n: int, email: str, first_name: str = "Ann", job: str = "job-1", options=ImportOptions(), **values):
    row = AcceptedRow(row=n, line=n + 1, values=ClientValues(email=email, first_name=first_name, **values), original={})
    return PendingRow(job, options, row)


def plan(rows, existing=(), usernames=None):
    existing = {c.email: c for c in existing}
    if usernames is None:
        usernames = {c.username: c.email for c in existing.values()}
    ids = itertools.count(1)
    return plan_writes(rows, existing, usernames, lambda: f"new-{next(ids)}")


def outcomes(result) -> list[str]:
    return [r.outcome.value for _, r in result.results]


def error_codes(result) -> list[list[str]]:
    return [[e.code for e in r.errors] for _, r in result.results]


# --- new clients ---------------------------------------------------------------------------------------


def test_a_new_email_creates_a_client_with_defaults_and_a_generated_username():
    result = plan([pending(1, "ann.lee@x.com")])

    (job_id, row_result), = result.results
    assert (job_id, row_result.outcome, row_result.row, row_result.line) == ("job-1", Outcome.CREATED, 1, 2)
    assert result.created == {
        "ann.lee@x.com": Client(id="new-1", email="ann.lee@x.com", username="ann.lee", first_name="Ann",
                                middle_name=None, last_name=None, project="default", desk="default", type="personal")
    }
    assert (row_result.client_id, row_result.username) == ("new-1", "ann.lee")
    assert result.upserts == list(result.created.values())


def test_every_field_of_a_client_is_one_of_the_fields_and_each_default_reaches_a_new_client():
    from dataclasses import fields

    from shared.fields import DEFAULTS, FIELDS

    assert {f.name for f in fields(Client)} == {"id", *(f.key for f in FIELDS)}
    made = new_client("new-1", ClientValues(email="a@x.com", first_name="A"), "aaa")
    assert {key: getattr(made, key) for key in DEFAULTS} == DEFAULTS


def test_given_values_are_used_for_a_new_client():
    result = plan([pending(1, "ann@x.com", middle_name="M", last_name="Lee", username="annie", project="P",
                           desk="D", type="corporate")])

    client = result.created["ann@x.com"]
    assert (client.username, client.middle_name, client.last_name, client.project, client.desk, client.type) == (
        "annie", "M", "Lee", "P", "D", "corporate")


@pytest.mark.parametrize(
    "email, first_name, last_name, base",
    [
        ("ann@x.com", "Ann", None, "ann"),
        ("Ann.Lee@x.com", "Ann", None, "ann.lee"),
        ("josé.núñez@x.com", "José", None, "jose.nunez"),
        ("ann_lee-2@x.com", "Ann", None, "ann_lee-2"),
        ("al@x.com", "Ann", "Lee", "ann.lee"),
        ("李@x.com", "Zoë", "Brontë", "zoe.bronte"),
        ("李@x.com", "李", "小龍", "client"),
        ("a@x.com", "Al", None, "client"),
        ("a" * 64 + "@x.com", "Ann", None, "a" * 58),
    ],
)
def test_a_username_is_made_from_the_email_then_the_names_then_client(email, first_name, last_name, base):
    assert username_base(ClientValues(email=email, first_name=first_name, last_name=last_name)) == base


_SLUG_LIKE = st.text(st.sampled_from("abzAZ09._-+@ é"), max_size=70)


@given(st.one_of(_SLUG_LIKE, st.text(max_size=70)))
def test_the_plain_base_shortcut_gives_the_full_recipes_answer(text: str):
    full = plan_module._slug(text)[: plan_module._BASE_MAX].strip("._-")
    assert plan_module._base_of(text) == full


@pytest.mark.parametrize(
    "taken, expected",
    [
        (set(), "ann"),
        ({"ann"}, "ann1"),
        ({"ann", "ann1"}, "ann2"),
        ({"ann", "ann1", "ann3"}, "ann2"),
        ({"ann1", "ann2"}, "ann"),
        ({"ann", *(f"ann{i}" for i in range(1, 12))}, "ann12"),
    ],
)
def test_a_taken_username_gets_the_smallest_free_numeric_suffix(taken: set[str], expected: str):
    assert free_username("ann", taken.__contains__) == expected


def test_new_clients_with_the_same_base_in_one_batch_get_ann_ann1_ann2():
    result = plan([pending(1, "ann@x.com"), pending(2, "ann@y.com"), pending(3, "ann@z.com")])

    assert [r.username for _, r in result.results] == ["ann", "ann1", "ann2"]


def test_a_generated_username_avoids_the_ones_existing_clients_hold():
    result = plan([pending(1, "ann@y.com")], existing=[ANN], usernames={"ann": "ann@x.com", "ann1": "other@x.com"})

    assert result.created["ann@y.com"].username == "ann2"


def test_a_given_username_held_by_another_client_is_rejected():
    result = plan([pending(1, "new@x.com", username="bob"), pending(2, "ann@x.com", username="bob")],
                  existing=[ANN, BOB])

    assert outcomes(result) == ["rejected", "rejected"]
    assert error_codes(result) == [["username_taken"], ["username_taken"]]
    (_, first), _ = result.results
    assert first.errors[0].field == "username" and "bob" in first.errors[0].message
    assert result.upserts == []


def test_a_client_may_give_its_own_username():
    result = plan([pending(1, "ann@x.com", username="ann")], existing=[ANN])
    assert outcomes(result) == ["unchanged"]


def test_a_username_taken_by_an_earlier_row_of_the_batch_is_rejected():
    result = plan([pending(1, "ann@x.com"), pending(2, "zed@x.com", username="ann")])

    assert outcomes(result) == ["created", "rejected"]
    assert error_codes(result)[1] == ["username_taken"]


# --- existing clients ---------------------------------------------------------------------------------------


def test_given_values_overwrite_an_existing_client():
    result = plan([pending(1, "ann@x.com", first_name="Annie", last_name="Smith", project="Beta", desk="D2",
                           type="personal", username="annie")], existing=[ANN])

    assert outcomes(result) == ["updated"]
    assert result.updated["ann@x.com"] == Client(
        id="c-ann", email="ann@x.com", username="annie", first_name="Annie", middle_name="M", last_name="Smith",
        project="Beta", desk="D2", type="personal")
    assert result.created == {}


def test_empty_cells_and_absent_columns_keep_the_clients_values():
    # A file with only firstName and email: every other value is None.
    result = plan([pending(1, "ann@x.com", first_name="Annie")], existing=[ANN])

    assert result.updated["ann@x.com"] == Client(
        id="c-ann", email="ann@x.com", username="ann", first_name="Annie", middle_name="M", last_name="Lee",
        project="Alpha", desk="D1", type="corporate")


def test_a_row_that_changes_nothing_is_unchanged_and_not_written():
    result = plan([pending(1, "ann@x.com", middle_name="M", last_name="Lee", project="Alpha", type="corporate")],
                  existing=[ANN])

    (_, row_result), = result.results
    assert row_result.outcome is Outcome.UNCHANGED
    assert (row_result.client_id, row_result.username) == ("c-ann", "ann")
    assert result.upserts == []


def test_merge_keeps_what_the_row_leaves_empty():
    merged = merge(ANN, ClientValues(email="ann@x.com", first_name="Ann", desk="D9"))
    assert merged == Client(**{**ANN.__dict__, "desk": "D9"})


def test_a_renamed_clients_old_username_is_free_for_later_rows():
    result = plan([pending(1, "ann@x.com", username="annie"), pending(2, "ann@y.com")], existing=[ANN])

    assert outcomes(result) == ["updated", "created"]
    assert result.created["ann@y.com"].username == "ann"


def test_the_writes_of_a_plan_can_be_applied_in_order_without_two_clients_sharing_a_username():
    # The database checks the unique username on every row it writes, in the order given.
    result = plan([pending(1, "ann@x.com", username="annie"), pending(2, "bob@y.com", username="ann")],
                  existing=[ANN, BOB])
    assert outcomes(result) == ["updated", "created"]

    owners = {c.username: c.email for c in (ANN, BOB)}
    for client in result.upserts:
        owners = {name: email for name, email in owners.items() if email != client.email}
        assert client.username not in owners, f"{client.email} takes {client.username} while {owners.get(client.username)} holds it"
        owners[client.username] = client.email


# --- modes ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mode, email, outcome, code",
    [
        (Mode.CREATE_ONLY, "ann@x.com", "rejected", "already_exists"),
        (Mode.CREATE_ONLY, "new@x.com", "created", None),
        (Mode.UPDATE_ONLY, "new@x.com", "rejected", "not_found"),
        (Mode.UPDATE_ONLY, "ann@x.com", "updated", None),
        (Mode.UPSERT, "ann@x.com", "updated", None),
        (Mode.UPSERT, "new@x.com", "created", None),
    ],
)
def test_the_mode_decides_whether_new_and_existing_emails_are_written(mode, email, outcome, code):
    result = plan([pending(1, email, first_name="Zed", options=ImportOptions(mode=mode))], existing=[ANN])

    (_, row_result), = result.results
    assert row_result.outcome.value == outcome
    if code:
        (issue,) = row_result.errors
        assert (issue.code, issue.field) == (code, "email")
        assert email in issue.message
        assert result.upserts == []
    else:
        assert len(result.upserts) == 1


# --- order within a batch -----------------------------------------------------------------------------------


def test_the_same_email_twice_in_a_batch_is_applied_in_order():
    result = plan([
        pending(1, "ann@x.com", job="job-1", project="P1"),
        pending(1, "ann@x.com", job="job-2", project="P2"),
        pending(2, "ann@x.com", job="job-3", project="P2"),
    ])

    assert outcomes(result) == ["created", "updated", "unchanged"]
    assert [job for job, _ in result.results] == ["job-1", "job-2", "job-3"]
    assert result.created == {"ann@x.com": Client(id="new-1", email="ann@x.com", username="ann", first_name="Ann",
                                                  middle_name=None, last_name=None, project="P2", desk="default",
                                                  type="personal")}
    assert result.updated == {}
    assert len({r.client_id for _, r in result.results}) == 1


def test_a_create_only_job_after_another_job_created_the_email_in_the_same_batch_is_rejected():
    result = plan([pending(1, "ann@y.com", job="job-1"),
                   pending(1, "ann@y.com", job="job-2", options=ImportOptions(mode=Mode.CREATE_ONLY))])

    assert outcomes(result) == ["created", "rejected"]
    assert error_codes(result)[1] == ["already_exists"]


def test_results_come_in_the_order_of_the_rows():
    rows = [pending(n, f"c{n}@x.com") for n in (5, 1, 3)]
    assert [r.row for _, r in plan(rows).results] == [5, 1, 3]


# --- dry runs -----------------------------------------------------------------------------------------------

DRY = ImportOptions(dry_run=True)


def test_a_dry_run_computes_outcomes_but_writes_nothing():
    result = plan([pending(1, "new@x.com", options=DRY), pending(2, "ann@x.com", first_name="Annie", options=DRY),
                   pending(3, "bob@x.com", first_name="Bob", options=DRY)], existing=[ANN, BOB])

    assert outcomes(result) == ["created", "updated", "unchanged"]
    assert result.upserts == [] and result.created == {} and result.updated == {}


def test_a_dry_run_sees_its_own_earlier_rows():
    result = plan([pending(1, "new@x.com", job="dry", options=DRY), pending(2, "new@x.com", job="dry", options=DRY),
                   pending(3, "ann@x.com", job="dry", options=DRY)])

    assert outcomes(result) == ["created", "unchanged", "created"]
    assert [r.username for _, r in result.results] == ["new", "new", "ann"]


def test_a_dry_run_does_not_affect_real_rows_in_the_same_batch():
    result = plan([pending(1, "ann@x.com", job="dry", options=DRY, username="zed"),
                   pending(1, "ann@x.com", job="real"),
                   pending(2, "zed@x.com", job="real", username="zed")])

    assert outcomes(result) == ["created", "created", "created"]
    assert result.created["ann@x.com"].username == "ann"
    assert set(result.created) == {"ann@x.com", "zed@x.com"}


def test_two_dry_runs_in_one_batch_do_not_see_each_other():
    result = plan([pending(1, "ann@x.com", job="dry-1", options=DRY), pending(1, "ann@x.com", job="dry-2", options=DRY)])

    assert outcomes(result) == ["created", "created"]


@pytest.mark.parametrize(
    "rows",
    [
        [("ann@x.com", {"username": "annie"}), ("bob@y.com", {"username": "ann"})],
        [("ann@x.com", {"first_name": "Annie"}), ("ann@y.com", {}), ("ann@z.com", {})],
        [("new@x.com", {"username": "bob"}), ("bob@x.com", {"project": "P"}), ("bob@x.com", {"project": "P"})],
        [("bob@x.com", {"username": "bobby"}), ("ann@x.com", {"username": "bob"}), ("bob@y.com", {})],
    ],
    ids=["rename then reuse", "update then generate", "taken then update", "rename then take and generate"],
)
def test_a_dry_run_predicts_exactly_what_the_real_import_does(rows):
    def run(options):
        return plan([pending(n, email, options=options, **values) for n, (email, values) in enumerate(rows, 1)],
                    existing=[ANN, BOB])

    real, dry = run(ImportOptions()), run(DRY)

    assert [(r.outcome, r.username, r.errors) for _, r in dry.results] == [
        (r.outcome, r.username, r.errors) for _, r in real.results]
