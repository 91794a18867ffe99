"""Request paths are taken as they are written: a dot segment is refused, never resolved.

`/imports/../clients` is not `/clients` here (a client or a proxy may have resolved it already; we do
not guess), and `/imports/%2e%2e` is not a job id. Refused before routing, with the API's error shape.
"""

import json
from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["DotSegmentGuard", "has_dot_segment"]

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


async def _refuse(send: Send) -> None:
    body = json.dumps({"code": "invalid_path", "message": "The path may not contain “.” or “..” segments."}).encode()
    await send({"type": "http.response.start", "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
