"""The page's sign-in sessions, in the database (`page_sessions`), so that a session outlives a restart
of the API and signing out ends it on every API process at once.

The cookie holds a random token; the table holds only its SHA-256 (a copy of the database signs
nobody in) and when it expires: `SESSION_TTL_S` after sign-in, whatever the activity. Expired rows
are deleted on each sign-in, a bounded number at a time (more than a sign-in adds), so the table
holds about the live sessions.

Over HTTPS the cookie is `__Host-clients_import_session`: the browser keeps it only if it is Secure, has
Path=/ and no Domain, so no sibling subdomain can set or overwrite it (cookie tossing). Over plain HTTP
(development on loopback) it is `clients_import_session`. Each scheme reads only its own name.
"""

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import as_utc, reading
from shared.tables import page_sessions

__all__ = ["COOKIE", "SECURE_COOKIE", "Sessions", "cookie_name"]

_PURGE = 100  # expired sessions deleted per sign-in
COOKIE = "clients_import_session"
SECURE_COOKIE = f"__Host-{COOKIE}"


def cookie_name(https: bool) -> str:
    return SECURE_COOKIE if https else COOKIE


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Sessions of the page, shared by every API process through the database. The engine is only used
    when a session is opened, checked or closed (the app can be built without one)."""

    def __init__(self, engine: AsyncEngine | None, ttl_s: float) -> None:
        self.engine, self.ttl = engine, timedelta(seconds=ttl_s)

    async def open(self) -> str:
        """A new session: its token, for the cookie."""
        token = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        expired = select(page_sessions.c.token_hash).where(page_sessions.c.expires_at <= now).limit(_PURGE)
        async with self._engine().begin() as conn:
            await conn.execute(delete(page_sessions).where(page_sessions.c.token_hash.in_(expired)))
            await conn.execute(insert(page_sessions).values(token_hash=token_hash(token), expires_at=now + self.ttl))
        return token

    async def valid(self, token: str | None) -> bool:
        if not token:
            return False
        query = select(page_sessions.c.expires_at).where(page_sessions.c.token_hash == token_hash(token))
        async with reading(self._engine()).connect() as conn:
            expires_at = as_utc(await conn.scalar(query))
        return expires_at is not None and expires_at > datetime.now(UTC)

    async def close(self, token: str | None) -> None:
        """Sign out: the session ends for every API process."""
        if not token:
            return
        async with self._engine().begin() as conn:
            await conn.execute(delete(page_sessions).where(page_sessions.c.token_hash == token_hash(token)))

    def _engine(self) -> AsyncEngine:
        if self.engine is None:
            raise RuntimeError("page sessions need the database: build the API with an engine")
        return self.engine
