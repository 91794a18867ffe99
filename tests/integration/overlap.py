"""Watching SQLite work beside Python: for the writer's catch-up and commit, which run on aiosqlite's
thread while the writer's Python runs on its own."""

import time
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection


async def works_beside(conn: AsyncConnection, run: Callable[[Callable[[], bool]], Awaitable[bool]], every: int) -> bool:
    """Whether `run(work)` calls `work` while SQLite is busy with `conn`'s statement: `work` waits (up to
    10 s) for SQLite's progress callback (every `every` steps of its program), which code that waited for
    the statement before working would never see."""
    steps: list[int] = []
    driver = (await conn.get_raw_connection()).driver_connection
    await driver.set_progress_handler(lambda: steps.append(1), every)

    def work() -> bool:
        seen, deadline = len(steps), time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(steps) > seen:
                return True
            time.sleep(0.001)
        return False

    try:
        return await run(work)
    finally:
        await driver.set_progress_handler(None, 0)
