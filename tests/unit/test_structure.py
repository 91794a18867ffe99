"""The structure the code keeps: services apart, and each piece of knowledge with one owner in shared/."""

import ast
import re
from pathlib import Path

from clients_import.topology import ENTRY_TOPICS, EXIT_TOPICS, STAGES
from shared import topics
from shared.events import JobStatus, Mode
from shared.fields import FIELDS

ROOT = Path(__file__).parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "__init__.py").exists())


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


def test_no_service_imports_another_service_or_the_command_line():
    for service in SERVICES:
        for path in (ROOT / "services" / service).rglob("*.py"):
            for module in imported_modules(path):
                assert not module.startswith("clients_import"), f"{path} imports {module}"
                if module.startswith("services."):
                    assert module.split(".")[1] == service, f"{path} imports {module}"


def owned_words() -> set[str]:
    """The spellings only shared/ may list: field names and keys, defaults, modes and statuses."""
    return ({f.column for f in FIELDS} | {f.key for f in FIELDS} | {m.value for m in Mode} | {s.value for s in JobStatus}
            | {f.default for f in FIELDS if f.default and f.default != "default"})


# Words that name nothing but a mode or a status: never quoted outside shared/. (Ordinary words that
# are also statuses, like "rejected" or "failed", and field names used as one column each, are fine
# alone; a line that quotes three of them is a list spelled out.)
SINGLE = {m.value for m in Mode} | {"received", "processing", "completed_with_errors", "validated"}


def spelled_out(line: str) -> bool:
    quoted = set(re.findall(r"""["'`]([A-Za-z_]+)["'`]""", line))
    return bool(quoted & SINGLE) or len(quoted & owned_words()) >= 3


def test_outside_shared_no_file_spells_out_the_fields_modes_or_statuses():
    offenders = []
    for path in [*ROOT.glob("services/**/*.py"), *ROOT.glob("clients_import/*.py"), *ROOT.glob("services/api/static/*.*")]:
        if path.suffix not in (".py", ".js", ".html"):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if spelled_out(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_topology_is_closed_every_consumed_topic_has_a_publisher_and_every_topic_is_used():
    published = {o.topic for s in STAGES for o in s.publishes} | set(ENTRY_TOPICS)
    consumed = {t for s in STAGES for t in s.consumes}
    assert consumed <= published
    assert published | {topics.DLQ} == set(topics.ALL)
    assert published - consumed <= set(EXIT_TOPICS)
    assert len({s.name for s in STAGES}) == len(STAGES)
