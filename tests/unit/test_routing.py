"""Where the validator's results go: every row of one email to one partition, in file order."""

import pytest

from services.validator.routing import partition_for, route
from shared import topics
from shared.events import AcceptedRow, Chunk, ClientValues, ImportOptions, Issue, RejectedRow, RowsAccepted, RowsRejected

OPTIONS = ImportOptions(dry_run=True)
CHUNK = Chunk(job_id="job-1", index=3, count=5, first_row=1, lines=(), csv="", columns={}, options=OPTIONS)


def accepted(n: int, email: str) -> AcceptedRow:
    return AcceptedRow(row=n, line=n + 1, values=ClientValues(email=email, first_name="A"), original={})


def rejected(n: int) -> RejectedRow:
    return RejectedRow(row=n, line=n + 1, errors=(Issue(code="missing_email", message="m"),), original={})


@pytest.mark.parametrize("partitions", [1, 2, 4, 7, 32])
def test_an_email_always_goes_to_the_same_partition_within_range(partitions: int):
    for i in range(200):
        email = f"client{i}@x.com"
        assert 0 <= partition_for(email, partitions) < partitions
        assert partition_for(email, partitions) == partition_for(email, partitions)


def test_emails_spread_over_the_partitions():
    assert {partition_for(f"client{i}@x.com", 4) for i in range(100)} == {0, 1, 2, 3}


def test_every_accepted_row_is_published_once_on_its_emails_partition_in_file_order():
    rows = [accepted(n, f"c{n % 5}@x.com") for n in range(1, 21)]

    publications = route(CHUNK, rows, [], partitions=4)

    seen = []
    for p in publications:
        assert p.topic == topics.ROWS_ACCEPTED and p.key == "job-1"
        assert isinstance(p.event, RowsAccepted)
        assert (p.event.job_id, p.event.chunk, p.event.options) == ("job-1", 3, OPTIONS)
        assert {partition_for(r.values.email, 4) for r in p.event.rows} == {p.partition}
        assert [r.row for r in p.event.rows] == sorted(r.row for r in p.event.rows)
        seen += [r.row for r in p.event.rows]
    assert sorted(seen) == list(range(1, 21))
    assert len({p.partition for p in publications}) == len(publications)


def test_rejected_rows_are_published_once_keyed_by_job():
    publications = route(CHUNK, [accepted(1, "a@x.com")], [rejected(2), rejected(3)], partitions=4)

    (event,) = [p.event for p in publications if p.topic == topics.ROWS_REJECTED]
    assert isinstance(event, RowsRejected)
    assert (event.job_id, event.chunk, [r.row for r in event.rows]) == ("job-1", 3, [2, 3])


def test_a_chunk_without_rejected_rows_publishes_no_rejection_event():
    assert all(p.topic == topics.ROWS_ACCEPTED for p in route(CHUNK, [accepted(1, "a@x.com")], [], partitions=4))


def test_a_chunk_of_only_rejected_rows_publishes_only_the_rejection():
    assert [p.topic for p in route(CHUNK, [], [rejected(1)], partitions=4)] == [topics.ROWS_REJECTED]


def test_no_record_passes_the_byte_budget_and_every_row_travels_in_exactly_one():
    wide = {f"column {i}": "\x01" * 200 for i in range(50)}  # control characters take 6 bytes each in JSON
    good = [AcceptedRow(row=n, line=n, values=ClientValues(email=f"c{n}@x.com", first_name="A"), original=wide)
            for n in range(1, 41)]
    bad = [RejectedRow(row=n, line=n, errors=(Issue(code="missing_email", message="m"),), original=wide)
           for n in range(41, 81)]
    budget = 256 * 1024

    publications = route(CHUNK, good, bad, partitions=2, max_bytes=budget)

    assert all(len(p.encoded()) <= budget for p in publications)
    assert len(publications) > 4  # the budget did split them
    rows = [r.row for p in publications for r in p.event.rows]
    assert sorted(rows) == list(range(1, 81)) and len(rows) == len(set(rows))
    for p in publications:
        assert p.encoded() == p.event.model_dump_json().encode()
