"""The one error every route answers with: an HTTP status, a stable code and a plain message."""

__all__ = ["ApiError"]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}
