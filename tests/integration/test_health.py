"""When a stage fails, the runner asks whether the database is the cause: a locked or unreachable one is."""

import asyncio
import sqlite3
import tempfile
from pathlib import Path

from sqlalchemy.exc import DBAPIError, IntegrityError

from clients_import.pipeline import Pipeline
from shared.settings import Settings
from shared.stage import is_transient


async def test_a_database_another_process_holds_locked_is_not_healthy_and_is_again_once_released():
    path = Path(tempfile.mkdtemp()) / "locked.db"
    settings = Settings(database_url=f"sqlite+aiosqlite:///{path}", api_token="t", _env_file=None)
    async with Pipeline(settings, in_memory=True) as pipeline:
        assert await pipeline.healthy()
        # Its own wait for the lock is not under test: a pipeline writing at start-up may hold it a moment (a busy CI).
        # Waited for off the event loop, which the pipeline's own transaction needs to finish and let go.
        holder = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")  # a backup or an admin's session holding the lock
        try:
            assert not await pipeline.healthy()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert await pipeline.healthy()
    await pipeline.engine.dispose()


class _Orig(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def test_postgresql_errors_of_a_server_away_full_restarting_or_contended_are_transient():
    for state in ("08006", "53300", "57P01", "57P03", "40001", "40P01"):
        assert is_transient(DBAPIError("INSERT", {}, _Orig(state))), state
    assert not is_transient(DBAPIError("INSERT", {}, _Orig("22021")))  # a NUL in text: the record's fault
    assert not is_transient(IntegrityError("INSERT", {}, _Orig("23505")))
