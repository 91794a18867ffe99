"""One notification per job even when the notifier dies between publishing it and recording it: the
notifier that runs the job's records again reads the topic back and does not publish it twice. On each
database backend; the topic is kept in memory here (tests/e2e/test_crash.py does it on a real broker)."""

import uuid
from types import SimpleNamespace

from services.notifier import ledger
from services.notifier.app import Notifier
from shared import topics
from shared.events import ImportOptions, JobAccepted, JobRepeated, Outcome, RowResult, RowsWritten, Source
from shared.readback import MemoryPublishedLog
from shared.settings import Settings


class Topics:
    """What a broker would keep: every record published, by topic."""

    def __init__(self) -> None:
        self.records: dict[str, list] = {}

    async def publish(self, publications) -> None:
        for p in publications:
            self.records.setdefault(p.topic, []).append(SimpleNamespace(key=p.key.encode(), value=p.encoded()))

    def notifications(self, job_id: str) -> int:
        return sum(r.key == job_id.encode() for r in self.records.get(topics.NOTIFICATIONS, []))


def a_notifier(db, kept: Topics) -> Notifier:
    return Notifier(Settings(_env_file=None), db, kept.publish, MemoryPublishedLog(kept.records))


async def a_finished_job(db) -> tuple[str, RowsWritten]:
    job = str(uuid.uuid4())
    async with db.begin() as conn:
        await ledger.record_jobs(conn, [JobAccepted(
            job_id=job, file_name="f.csv", source=Source.TOPIC, requested_by="t",
            options=ImportOptions(), total=1, chunks=1)])
    return job, RowsWritten(job_id=job, results=(
        RowResult(row=1, line=2, outcome=Outcome.CREATED, email="a@x.com", client_id="1"),))


async def run_batch(notifier: Notifier, kept: Topics, events: list, then: bool = True) -> None:
    """What the stage runner does with a batch: handle, publish, then record (unless it dies first)."""
    handled = await notifier.announcements(await notifier.record(events))
    await kept.publish(handled.publications)
    if then:
        await handled.then()


async def test_a_notifier_that_died_after_publishing_does_not_publish_the_notification_again(db):
    kept = Topics()
    job, written = await a_finished_job(db)
    await run_batch(a_notifier(db, kept), kept, [written], then=False)  # killed before it recorded the notice
    assert kept.notifications(job) == 1

    restarted = a_notifier(db, kept)
    await run_batch(restarted, kept, [written])  # the same records, delivered again
    await run_batch(restarted, kept, [written])  # and again, after it was recorded
    assert kept.notifications(job) == 1
    async with db.connect() as conn:
        assert await ledger.notices_under_way(conn, [job]) == {}  # recorded as notified: nothing left to check


async def test_a_notifier_that_died_before_publishing_publishes_the_notification(db):
    kept = Topics()
    job, written = await a_finished_job(db)
    dying = a_notifier(db, kept)
    handled = await dying.announcements(await dying.record([written]))  # noted, then killed before publishing
    assert [p.key for p in handled.publications if p.topic == topics.NOTIFICATIONS] == [job]

    await run_batch(a_notifier(db, kept), kept, [written])
    assert kept.notifications(job) == 1


async def test_a_repeated_request_gets_its_notification_again_once(db):
    kept = Topics()
    job, written = await a_finished_job(db)
    notifier = a_notifier(db, kept)
    await run_batch(notifier, kept, [written])
    await run_batch(notifier, kept, [JobRepeated(job_id=job)], then=False)  # died again after publishing
    await run_batch(a_notifier(db, kept), kept, [JobRepeated(job_id=job)])
    assert kept.notifications(job) == 2


async def test_a_repeated_request_delivered_twice_gets_one_more_notification(db):
    kept = Topics()
    job, written = await a_finished_job(db)
    notifier = a_notifier(db, kept)
    await run_batch(notifier, kept, [written])
    repeat = JobRepeated(job_id=job, request=f"{topics.REQUESTS}/1/17")
    await run_batch(notifier, kept, [repeat])
    await run_batch(notifier, kept, [repeat])  # the uploader took the same request twice (it restarted)
    assert kept.notifications(job) == 2
    await run_batch(notifier, kept, [JobRepeated(job_id=job, request=f"{topics.REQUESTS}/0/3")])  # another one
    assert kept.notifications(job) == 3
