"""The pipeline's topology, declared once: its stages, what each consumes and publishes.

Runners (`clients_import.pipeline`) put these stages on a real broker or on the in-memory one; the
services never wire themselves. `describe()` prints the table the README shows.
"""

from services.notifier import app as notifier
from services.uploader import app as uploader
from services.validator import app as validator
from services.writer import app as writer
from shared import topics
from shared.stage import Stage

__all__ = ["STAGES", "STAGE_NAMES", "SERVICES", "ENTRY_TOPICS", "stages", "describe"]

STAGES: tuple[Stage, ...] = (uploader.STAGE, validator.STAGE, writer.STAGE, notifier.STAGE)
STAGE_NAMES = tuple(stage.name for stage in STAGES)
# The HTTP API is a service with no consumer: it publishes requests as a partner does.
SERVICES = ("api", *STAGE_NAMES)
# Topics the outside world writes: partners, our API and our CLI.
ENTRY_TOPICS = (topics.REQUESTS,)
# Topics the outside world reads.
EXIT_TOPICS = (topics.PROGRESS, topics.NOTIFICATIONS, topics.DLQ)


def stages(names: tuple[str, ...] = STAGE_NAMES) -> tuple[Stage, ...]:
    unknown = set(names) - set(STAGE_NAMES)
    if unknown:
        raise ValueError(f"unknown stage(s) {', '.join(sorted(unknown))}: choose from {', '.join(STAGE_NAMES)}")
    return tuple(stage for stage in STAGES if stage.name in names)


def describe() -> str:
    """stage | consumes | publishes, one line each, as a Markdown table."""
    lines = ["| stage | consumes | publishes |", "|---|---|---|",
             f"| api (HTTP) | — | {', '.join(f'`{t}`' for t in ENTRY_TOPICS)} |"]
    for stage in STAGES:
        consumed = ", ".join(f"`{t}`" for t in stage.consumes)
        published = ", ".join(f"`{o.topic}`" for o in stage.publishes)
        lines.append(f"| {stage.name} | {consumed} | {published}, `{topics.DLQ}` |")
    return "\n".join(lines)
