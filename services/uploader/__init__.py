"""The uploader stage: import requests in, the job and its raw CSV chunks out."""

from .app import STAGE, take_requests

__all__ = ["STAGE", "take_requests"]
