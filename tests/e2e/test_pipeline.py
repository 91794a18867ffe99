"""The four stages on the in-memory runner and on a real Kafka broker, each with a real database: what a
partner and a user see. Every test runs on both (see both_runners)."""

import asyncio

from sqlalchemy import func, select

from shared.events import JobStatus
from shared.tables import clients, row_outcomes

from .both_runners import database, partner, runner  # noqa: F401 - every test here runs on both runners
from .conftest import clients_of, unique_domain

SEED = """firstName,email,username,middleName,lastName
example1,example1@{d},,,exampleL1
example2,example2@{d},,,exampleL2
"""


async def test_the_seed_example_creates_two_clients_with_defaults_and_generated_usernames(partner, database):
    d = unique_domain()
    note = await partner.run(SEED.format(d=d))

    assert (note.status, note.total, note.created, note.updated, note.rejected) == (JobStatus.COMPLETED, 2, 2, 0, 0)
    assert note.finished_at.utcoffset() is not None and note.finished_at.utcoffset().total_seconds() == 0
    stored = await clients_of(database, d)
    assert {e: (c["first_name"], c["last_name"], c["middle_name"]) for e, c in stored.items()} == {
        f"example1@{d}": ("example1", "exampleL1", None),
        f"example2@{d}": ("example2", "exampleL2", None),
    }
    for client in stored.values():
        assert (client["project"], client["desk"], client["type"]) == ("default", "default", "personal")
    assert sorted(c["username"] for c in stored.values())[0].startswith("example1")
    assert len({c["username"] for c in stored.values()}) == 2


async def test_a_changed_row_for_a_known_email_updates_the_client(partner, database):
    d = unique_domain()
    await partner.run(f"firstName,email,lastName\nAnn,ann@{d},Lee\n")
    before = await clients_of(database, d)

    note = await partner.run(f"First Name,EMAIL,last_name,desk\nAnn,ANN@{d},Leigh,sales\n")

    assert (note.created, note.updated, note.unchanged, note.rejected) == (0, 1, 0, 0)
    after = await clients_of(database, d)
    assert list(after) == [f"ann@{d}"]
    client = after[f"ann@{d}"]
    assert (client["last_name"], client["desk"], client["project"]) == ("Leigh", "sales", "default")
    assert client["id"] == before[f"ann@{d}"]["id"] and client["username"] == before[f"ann@{d}"]["username"]


async def test_importing_the_same_file_twice_leaves_the_clients_unchanged(partner, database):
    d = unique_domain()
    text = f"firstName,email\nBo,bo@{d}\nCy,cy@{d}\n"
    await partner.run(text)
    note = await partner.run(text)
    assert (note.status, note.created, note.updated, note.unchanged) == (JobStatus.COMPLETED, 0, 0, 2)


async def test_a_file_over_5000_records_is_rejected_whole_and_writes_nothing(partner, database):
    d = unique_domain()
    rows = "".join(f"Name{i},n{i}@{d}\n" for i in range(5001))
    note = await partner.run("firstName,email\n" + rows)

    assert note.status is JobStatus.REJECTED
    assert note.reason.code == "too_many_records" and "5001" in note.reason.message
    assert (note.created, note.updated) == (0, 0)
    assert await clients_of(database, d) == {}


async def test_a_file_of_exactly_5000_records_is_imported(partner, database):
    d = unique_domain()
    rows = "".join(f"Name{i},n{i}@{d}\n" for i in range(5000))
    note = await partner.run("firstName,email\n" + rows)
    assert (note.status, note.created) == (JobStatus.COMPLETED, 5000)
    assert len(await clients_of(database, d)) == 5000


async def test_the_counts_add_up_to_the_rows_of_the_file(partner, database):
    d = unique_domain()
    text = (
        "firstName,email,type\n"
        f"Ok,ok@{d},\n"
        f",nofirst@{d},\n"
        "Nomail,,\n"
        f"Bad,not-an-email,\n"
        f"Dup,OK@{d},\n"
        f"=HYPERLINK(1),formula@{d},\n"
        f"Corp,corp@{d},Corporate\n"
        f"Kind,kind@{d},alien\n"
    )
    note = await partner.run(text)

    assert note.status is JobStatus.COMPLETED_WITH_ERRORS
    assert note.total == 8
    assert note.created + note.updated + note.unchanged + note.rejected == note.total
    assert (note.created, note.rejected) == (2, 6)
    assert [(e.row, e.code) for e in note.errors] == [
        (2, "missing_first_name"),
        (3, "missing_email"),
        (4, "invalid_email"),
        (5, "duplicate_email"),
        (6, "formula_injection"),
        (8, "invalid_type"),
    ]
    assert set(await clients_of(database, d)) == {f"ok@{d}", f"corp@{d}"}


async def test_a_file_that_is_not_csv_gets_a_rejected_notification_with_the_reason(partner):
    note = await partner.run(b"PK\x03\x04" + b"\x00" * 30 + b"xl/workbook.xml", file_name="clients.csv")
    assert note.status is JobStatus.REJECTED
    assert note.reason.code == "excel_workbook"
    assert "save it as CSV" in note.reason.message.replace("Save As > CSV", "save it as CSV")


async def test_several_files_at_once_each_get_their_own_notification(partner, database):
    domains = [unique_domain() for _ in range(4)]
    requests = [partner.request("firstName,email\n" + "".join(f"P{i},p{i}@{d}\n" for i in range(300))) for d in domains]
    await asyncio.gather(*(partner.client.submit(r) for r in requests))
    notes = await partner.client.wait([r.job_id for r in requests], timeout=90)

    assert [notes[r.job_id].created for r in requests] == [300] * 4
    async with database.connect() as conn:
        recorded = await conn.scalar(
            select(func.count()).select_from(row_outcomes).where(row_outcomes.c.job_id.in_([r.job_id for r in requests]))
        )
        stored = await conn.scalar(select(func.count()).select_from(clients).where(clients.c.email.like("p%@t%")))
    assert recorded == 1200
    assert stored >= 1200
