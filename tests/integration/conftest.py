"""Each integration test runs once per database backend: SQLite, and a real PostgreSQL."""

from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, create_tables

from ..postgres import LocalPostgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    server = LocalPostgres()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'clients.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await create_tables(engine)
    yield engine
    await engine.dispose()
