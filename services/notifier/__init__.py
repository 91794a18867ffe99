"""The notifier stage: job and row events in, progress and one notification per job out."""

from .app import STAGE, count_results

__all__ = ["STAGE", "count_results"]
