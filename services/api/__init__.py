"""The HTTP API: sign-in, uploads, the Clients page, and the read side (job documents, reports, clients)."""

from .app import build_api

__all__ = ["build_api"]
