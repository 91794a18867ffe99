"""The page's sessions in the database (a SQLite file here; the e2e suite runs them behind the API)."""

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from services.api.sessions import Sessions
from shared.db import create_engine, create_tables
from shared.tables import page_sessions


@pytest.fixture
async def engine(tmp_path):
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'sessions.db'}")
    await create_tables(engine)
    yield engine
    await engine.dispose()


async def stored(engine) -> dict[str, datetime]:
    async with engine.connect() as conn:
        return {r.token_hash: r.expires_at for r in await conn.execute(select(page_sessions))}


async def test_a_session_is_kept_by_its_hash_and_seen_by_every_process_until_signed_out(engine):
    here, there = Sessions(engine, 3600), Sessions(engine, 3600)  # two API processes on one database
    token = await here.open()

    hashes = await stored(engine)
    assert list(hashes) == [hashlib.sha256(token.encode()).hexdigest()] and token not in hashes
    assert await here.valid(token) and await there.valid(token)
    assert not await there.valid(token + "x") and not await there.valid(None) and not await there.valid("")

    await there.close(token)
    assert not await here.valid(token) and await stored(engine) == {}
    await there.close(token)  # again, or without a cookie: nothing to do
    await there.close(None)


async def test_a_session_ends_when_its_time_is_up(engine):
    sessions = Sessions(engine, 0.2)
    token = await sessions.open()
    assert await sessions.valid(token)
    await asyncio.sleep(0.3)
    assert not await sessions.valid(token)


async def test_a_sign_in_deletes_expired_sessions_a_bounded_number_at_a_time(engine):
    past = datetime.now(UTC) - timedelta(minutes=1)
    async with engine.begin() as conn:
        await conn.execute(insert(page_sessions), [{"token_hash": f"{i:064x}", "expires_at": past} for i in range(150)])
    sessions = Sessions(engine, 3600)
    live = await sessions.open()

    async with engine.connect() as conn:
        expired = await conn.scalar(select(func.count()).select_from(page_sessions).where(page_sessions.c.expires_at <= datetime.now(UTC)))
    assert expired == 50  # a hundred per sign-in
    await sessions.open()
    assert len(await stored(engine)) == 2 and await sessions.valid(live)


def test_the_sessions_need_no_database_until_they_are_used():
    assert Sessions(None, 60) is not None
    with pytest.raises(RuntimeError, match="database"):
        asyncio.run(Sessions(None, 60).open())
