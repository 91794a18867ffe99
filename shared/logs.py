"""Structured logs: one JSON object per line, one line per job step, always with the job id."""

import json
import logging
import sys
from datetime import UTC, datetime

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED and not k.startswith("_")})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLines())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # FastStream logs every message it handles; our own lines already say what happened per job step.
    # Never below WARNING for them, and never below what was asked (--log-level ERROR silences their warnings).
    for noisy in ("faststream", "aiokafka", "sqlalchemy.engine"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("aiokafka.consumer.group_coordinator").addFilter(_coordinator_warming_up)


def _coordinator_warming_up(record: logging.LogRecord) -> bool:
    # A new broker answers this for a moment while it creates __consumer_offsets; aiokafka retries.
    return "GroupCoordinatorNotAvailableError" not in record.getMessage()
