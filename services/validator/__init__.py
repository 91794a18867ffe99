"""The validator stage: raw CSV chunks in, accepted and rejected rows out."""

from .app import STAGE, validate_chunks

__all__ = ["STAGE", "validate_chunks"]
