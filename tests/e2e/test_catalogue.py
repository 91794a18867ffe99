"""The representative files of the rule catalogue, through the whole pipeline: in memory and on the real broker."""

from collections import defaultdict

import pytest

from shared.events import JobStatus

from ..catalogue import REPRESENTATIVE, Case
from .both_runners import database, partner, runner  # noqa: F401 - every test here runs on both runners


@pytest.mark.parametrize("case", REPRESENTATIVE, ids=lambda case: case.name)
async def test_a_catalogue_file_ends_as_the_rules_say(case: Case, partner, settings):
    note = await partner.run(case.data, file_name=f"{case.name}.csv")

    if case.refused:
        assert note.status is JobStatus.REJECTED
        assert note.reason.code == case.refused
        return
    assert (note.created, note.updated, note.unchanged, note.rejected) == (
        case.created, case.updated, case.unchanged, case.rejected
    )
    assert note.total == case.total
    errors: dict[int, list[str]] = defaultdict(list)
    for error in note.errors:
        errors[error.row].append(error.code)
    assert {row: sorted(codes) for row, codes in errors.items()} == case.errors
    assert sorted(w.code for w in note.warnings) == sorted(case.warnings)
