"""The contracts every service shares: topics, events, settings, tables."""

from . import events, topics
from .settings import Settings, get_settings

__all__ = ["Settings", "events", "get_settings", "topics"]
