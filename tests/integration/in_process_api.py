"""The API app served in process over ASGI, its broker stood in for: what it would publish is recorded."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from faststream.kafka.fastapi import KafkaRouter
from sqlalchemy.ext.asyncio import AsyncEngine

from services.api.app import build_api
from shared.events import ImportRequest
from shared.settings import Settings


@asynccontextmanager
async def api_client(settings: Settings, db: AsyncEngine, published: list[ImportRequest] | None = None,
                     failures: list[Exception] | None = None) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the API; each request the API publishes is appended to `published` (when given),
    unless a failure is left in `failures`: the next publish raises it (a broker away) instead."""
    router = KafkaRouter("127.0.0.1:9", schema_url=None)  # nothing listens there: publishing is stood in for
    if published is not None:
        async def publish(body: bytes, *_args, **_kwargs) -> None:
            if failures:
                raise failures.pop(0)
            published.append(ImportRequest.model_validate_json(body))

        router.broker.publish = publish
    app = build_api(settings, db, router)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        yield client
