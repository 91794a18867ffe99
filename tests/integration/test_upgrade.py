"""A database made by an earlier version is brought up to date when a service starts: the columns
added since (always nullable) appear, on each backend."""

from sqlalchemy import inspect, text

from shared.db import create_tables


async def columns(db, table: str) -> set[str]:
    async with db.connect() as conn:
        return await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns(table)})


async def test_columns_added_since_an_earlier_version_are_added_on_start(db):
    async with db.begin() as conn:  # as the first version made them
        await conn.execute(text("ALTER TABLE job_requests DROP COLUMN origin"))
        await conn.execute(text("ALTER TABLE webhook_deliveries DROP COLUMN delivery_id"))
    assert "origin" not in await columns(db, "job_requests")

    await create_tables(db)
    assert "origin" in await columns(db, "job_requests")
    assert "delivery_id" in await columns(db, "webhook_deliveries")
    await create_tables(db)  # and again: nothing left to add
