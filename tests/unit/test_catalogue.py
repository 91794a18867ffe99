"""Every catalogue file through the pure pipeline, and results that do not depend on chunk size."""

import random

import pytest

from shared.events import ImportOptions
from tests.catalogue import BY_NAME, CASES, REPRESENTATIVE, Case, simulate

ROW_ERROR_CASES = [case for case in CASES if case.refused is None and case.rejected]
ACCEPTED_CASES = [case for case in CASES if case.refused is None and case.total <= 100]


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
def test_catalogue_file_has_its_expected_outcome(case: Case):
    result = simulate(case.data)

    assert result.reason == case.refused
    assert result.counts == case.counts
    assert result.errors == case.errors
    assert result.warnings == sorted(case.warnings)
    assert result.total == case.total
    assert result.status == expected_status(case)


def expected_status(case: Case) -> str:
    if case.refused:
        return "rejected"
    return "completed_with_errors" if case.rejected else "completed"


def test_rejected_whole_files_carry_a_message_a_person_can_read():
    for case in (case for case in CASES if case.refused):
        refusal = simulate(case.data).refusal
        assert refusal is not None and len(refusal.message) > 15, case.name


def test_catalogue_has_a_handful_of_representative_entries_of_each_kind():
    kinds = {
        "clean": any(c.refused is None and not c.rejected and not c.warnings for c in REPRESENTATIVE),
        "rejected whole": any(c.refused for c in REPRESENTATIVE),
        "bad rows": any(c.rejected and not any("duplicate" in e for errs in c.errors.values() for e in errs)
                        for c in REPRESENTATIVE),
        "duplicates": any("duplicate_email" in errs for c in REPRESENTATIVE for errs in c.errors.values()),
        "windows-1252 semicolons": any(set(c.warnings) == {"decoded_as_windows_1252", "delimiter"}
                                       for c in REPRESENTATIVE),
        "utf-16": BY_NAME["utf16_tab_separated"].representative,
    }
    assert all(kinds.values()), kinds
    assert 6 <= len(REPRESENTATIVE) <= 8


def test_representative_entries_share_no_email_or_username_so_they_import_into_one_database():
    seen: dict[str, str] = {}
    for case in REPRESENTATIVE:
        if case.refused:
            continue
        result = simulate(case.data)
        keys = set(result.clients) | {client.username for client in result.clients.values()}
        for key in keys:
            assert key not in seen, f"{key} is in both {seen[key]} and {case.name}"
            seen[key] = case.name


def test_names_are_unique():
    assert len(BY_NAME) == len(CASES)


# --- properties ------------------------------------------------------------------------------------


def per_row(result):
    return result.counts, result.outcomes, result.errors, result.lines, result.usernames


@pytest.mark.parametrize("case", ROW_ERROR_CASES, ids=lambda case: case.name)
def test_results_of_a_file_with_bad_rows_do_not_depend_on_chunk_size(case: Case):
    whole = simulate(case.data, chunk_rows=10_000)
    rng = random.Random(f"chunks-{case.name}")
    for chunk_rows in {1, 2, case.total, case.total + 1, *(rng.randint(1, case.total + 1) for _ in range(12))}:
        assert per_row(simulate(case.data, chunk_rows=chunk_rows)) == per_row(whole), f"chunk_rows={chunk_rows}"


@pytest.mark.parametrize("case", ACCEPTED_CASES, ids=lambda case: case.name)
def test_every_row_ends_in_exactly_one_outcome(case: Case):
    rng = random.Random(f"sum-{case.name}")
    for chunk_rows in (rng.randint(1, case.total + 1) for _ in range(8)):
        result = simulate(case.data, chunk_rows=chunk_rows)
        assert sum(result.counts.values()) == result.total == case.total
        assert sorted(result.outcomes) == list(range(1, case.total + 1))


# Random files built from rows good and bad, with repeats, blank lines and quoted line breaks.
ROW_MAKERS = [
    lambda i: f"Ann{i},Lee,ann{i}@random.example.com,,Alpha",
    lambda i: f"Bob{i},,bob{i}@random.example.com,bob_{i},",
    lambda i: f",Lee,nofirst{i}@random.example.com,,",
    lambda i: f"Cid{i},Lee,not-an-email-{i},,",
    lambda i: f"=Dee{i},Lee,dee{i}@random.example.com,,",
    lambda i: f'Eve{i},"Lee\nSmith",eve{i}@random.example.com,,',
    lambda i: f"Fay{i},Lee,fay{i}@random.example.com,,,extra",
    lambda i: f"Gus{i},Lee,repeat{i % 3}@random.example.com,,",  # repeats an email of an earlier row
    lambda i: f"Hal{i},Lee,hal{i}@random.example.com,shared_{i % 4},",  # repeats a username
    lambda i: "",  # a blank line, not a record
]


def random_file(seed: int) -> bytes:
    rng = random.Random(seed)
    lines = ["firstName,lastName,email,username,project"]
    lines += [rng.choice(ROW_MAKERS)(i) for i in range(rng.randint(1, 80))]
    lines.append("Last,Row,last@random.example.com,,")
    return ("\r\n" if seed % 2 else "\n").join(lines).encode()


@pytest.mark.parametrize("seed", range(25))
def test_random_files_give_the_same_results_for_every_chunk_size(seed: int):
    data = random_file(seed)
    whole = simulate(data, chunk_rows=10_000)
    assert sum(whole.counts.values()) == whole.total
    rng = random.Random(seed)
    for chunk_rows in (rng.randint(1, whole.total + 1) for _ in range(10)):
        result = simulate(data, chunk_rows=chunk_rows)
        assert per_row(result) == per_row(whole), f"chunk_rows={chunk_rows}"
        assert sum(result.counts.values()) == result.total


# --- whole imports a user repeats or tries out -------------------------------------------------------


@pytest.mark.parametrize("name", ["clean_file", "rows_with_errors", "duplicates_in_file", "windows_1252_semicolon"])
def test_importing_the_same_file_again_changes_nothing(name: str):
    case = BY_NAME[name]
    first = simulate(case.data)

    again = simulate(case.data, existing=first.clients)

    assert again.counts == dict(created=0, updated=0, unchanged=case.created, rejected=case.rejected)
    assert again.clients == first.clients


@pytest.mark.parametrize("name", ["clean_file", "rows_with_errors", "duplicates_in_file"])
def test_a_dry_run_predicts_the_counts_and_writes_nothing(name: str):
    case = BY_NAME[name]

    result = simulate(case.data, options=ImportOptions(dry_run=True))

    assert result.counts == case.counts
    assert result.errors == case.errors
    assert result.status == "validated"
    assert result.clients == {}
