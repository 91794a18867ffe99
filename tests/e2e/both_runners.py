"""One test body, two runners: FastStream's in-memory broker and the real Kafka broker.

A test module that imports `runner`, `database` and `partner` from here runs each of its tests twice,
as FastStream's own suite does (`tests/brokers/base/`): `[memory]` proves the stages' wiring and
handlers, `[kafka]` proves the pipeline itself. Each runner has its database of its own.
"""

import pytest

__all__ = ["runner", "database", "partner"]


@pytest.fixture(params=["memory", "kafka"])
def runner(request) -> str:
    return request.param


@pytest.fixture
def database(runner, engine, memory_pipeline):
    """The database the runner under test writes to."""
    return memory_pipeline.engine if runner == "memory" else engine


@pytest.fixture
def partner(runner, partner, memory_partner):  # noqa: F811 - overrides the session's partner by runner
    return memory_partner if runner == "memory" else partner
