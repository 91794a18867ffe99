"""The services' log lines: JSON on stderr, at the level asked for, the libraries' included."""

import json
import logging

import pytest

from shared import logs


@pytest.fixture(autouse=True)
def restore_logging():
    root, saved = logging.getLogger(), logging.getLogger().handlers[:]
    levels = {name: logging.getLogger(name).level for name in ("", "aiokafka", "faststream", "sqlalchemy.engine")}
    yield
    root.handlers[:] = saved
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def test_log_level_error_silences_the_kafka_clients_warnings_too(capsys):
    logs.configure("ERROR")
    logging.getLogger("aiokafka.consumer.group_coordinator").warning("Marking the coordinator dead")
    logging.getLogger("clients_import.cli").error("a real problem")
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line["msg"] for line in lines] == ["a real problem"]


def test_at_info_the_libraries_still_say_only_warnings(capsys):
    logs.configure("INFO")
    logging.getLogger("aiokafka").info("fetching")
    logging.getLogger("aiokafka").warning("a broker went away")
    logging.getLogger("clients_import.cli").info("import started")
    assert [json.loads(line)["msg"] for line in capsys.readouterr().err.splitlines()] == ["a broker went away", "import started"]
