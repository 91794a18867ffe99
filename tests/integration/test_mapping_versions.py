"""A job is planned with one version of a saved mapping: the request delivered again after the mapping
was saved anew is planned as before; the next job takes the new version. On each database backend."""

import uuid

from services.uploader.app import UploaderPorts
from shared import mappings
from shared.settings import Settings


async def save(db, name: str, columns: dict) -> int:
    async with db.begin() as conn:
        return (await mappings.save(conn, name, columns, "test"))["version"]


async def test_a_job_keeps_the_mapping_version_it_was_first_planned_with(db):
    ports = UploaderPorts.open(Settings(_env_file=None), db)
    name, job, next_job = f"partner-{uuid.uuid4().hex[:8]}", str(uuid.uuid4()), str(uuid.uuid4())
    first = await save(db, name, {"Mail": "email"})
    for taken in (job, next_job):
        await ports.take(taken, "digest-" + taken, f"clients.import.requests/0/{taken}")

    assert (await ports.mapping(name, job))["version"] == first
    second = await save(db, name, {"E-Mail": "email"})
    again = await ports.mapping(name, job)  # the same request, delivered again after a restart
    assert (again["version"], again["columns"]) == (first, {"Mail": "email"})
    assert (await ports.mapping(name, next_job))["version"] == second
    assert await ports.mapping("nobody", str(uuid.uuid4())) is None
