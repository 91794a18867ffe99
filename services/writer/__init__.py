"""The writer stage: accepted rows in, clients upserted by email, one result per row out."""

from .app import STAGE, write_rows, written_events

__all__ = ["STAGE", "write_rows", "written_events"]
