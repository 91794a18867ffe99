"""Request paths are taken as they are written: a dot segment is refused, never resolved.

`/imports/../clients` is not `/clients` here (a client or a proxy may have resolved it already; we do
not guess), and `/imports/%2e%2e` is not a job id. Refused before routing, with the API's error shape.
"""

import json
import unicodedata
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DotSegmentGuard", "has_dot_segment", "JobIdGuard", "possible_job_id"]

_DOTS = {".", ".."}


def has_dot_segment(raw_path: str) -> bool:
    """Whether any segment of the path is `.` or `..`, written plainly or percent-encoded (once or more)."""
    for segment in raw_path.split("/"):
        decoded = segment
        for _ in range(3):  # %2e, %252e, ...: a segment is judged by every decoding a component might apply
            if decoded in _DOTS:
                return True
            decoded, before = unquote(decoded), decoded
            if decoded == before:
                break
        if decoded in _DOTS:
            return True
    return False


class DotSegmentGuard:
    """ASGI middleware: 400 `invalid_path` for a path with a dot segment."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw = scope.get("raw_path") or scope["path"].encode()
            if has_dot_segment(raw.decode("latin-1")) or has_dot_segment(scope["path"]):
                await _refuse(send)
                return
        await self.app(scope, receive, send)


JOB_ID_CHARS = 64  # import_jobs.id's width
_UNPRINTABLE = {"Cc", "Cf", "Cs", "Zl", "Zp"}  # control and format characters, lone surrogates, line separators


def possible_job_id(job_id: str) -> bool:
    """Whether `job_id` could name a job: no id we give holds a control character or is longer than 64
    (a NUL, say, that PostgreSQL refuses in any query)."""
    return len(job_id) <= JOB_ID_CHARS and not any(unicodedata.category(c) in _UNPRINTABLE for c in job_id)


class JobIdGuard:
    """ASGI middleware: 404 `unknown_import` for /imports/{id}... whose id no job can have, before any query."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            parts = scope["path"].split("/")
            if len(parts) > 2 and parts[1] == "imports" and not possible_job_id(parts[2]):
                await _refuse(send, 404, "unknown_import", "There is no import with that id.")
                return
        await self.app(scope, receive, send)


async def _refuse(send: Send, status: int = 400, code: str = "invalid_path",
                  message: str = "The path may not contain “.” or “..” segments.") -> None:
    body = json.dumps({"code": code, "message": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
