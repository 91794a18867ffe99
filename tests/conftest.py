"""The real parts the tests run on: one Kafka broker and one database per test session.

KAFKA_BOOTSTRAP_SERVERS points the tests at an existing broker; otherwise a local one is started
from Maven's jars (or testcontainers' Kafka where a Docker engine answers) and stopped at the end.
A broker that cannot start fails the tests that need it: they never skip.
"""

import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from clients_import.local_kafka import LocalKafka
from shared.db import create_engine, create_tables
from shared.kafka import ensure_topics
from shared.settings import Settings

API_TOKEN = f"test-token-{uuid.uuid4().hex}"
WEBHOOK_SECRET = f"test-secret-{uuid.uuid4().hex}"


def _docker_answers() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20).returncode == 0


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["KAFKA_BOOTSTRAP_SERVERS"]
        return
    if os.environ.get("CLIENTS_IMPORT_TEST_DOCKER") == "1" and _docker_answers():
        from testcontainers.community.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:  # opt-in: CLIENTS_IMPORT_TEST_DOCKER=1
            yield container.get_bootstrap_server()
        return
    with LocalKafka(max_message_bytes=Settings().request_max_bytes) as kafka:
        yield kafka.bootstrap


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """TEST_DATABASE_URL (PostgreSQL, say) when given, else a fresh SQLite file."""
    return os.environ.get("TEST_DATABASE_URL") or f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('db') / 'clients.db'}"


@pytest.fixture(scope="session")
def settings(kafka_bootstrap: str, database_url: str) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka_bootstrap,
        database_url=database_url,
        group_prefix=f"test-{uuid.uuid4().hex[:8]}",
        progress_interval_s=0.1,
        job_deadline_s=15,
        api_token=API_TOKEN,
        webhook_secret=WEBHOOK_SECRET,
        webhook_backoff_s=0.2,
        # The tests' webhook receivers listen on plain http on 127.0.0.1: allowed here by name, as an operator
        # would allow a receiver on a private network. Every other local or private destination stays refused.
        webhook_allow_http=True,
        webhook_allowed_destinations="127.0.0.1",
        instance_name=None,  # pipelines in one test process must never share a static member name
        # Every test calls the shared API from 127.0.0.1, many with wrong tokens on purpose: one budget
        # for the whole suite would lock the rest out. The limit has tests of its own (test_front_door).
        signin_attempts=100_000,
        _env_file=None,
    )


@pytest.fixture(scope="session")
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(settings.database_url)
    await create_tables(engine)
    await ensure_topics(settings)
    yield engine
    await engine.dispose()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder per test for what a person should look at afterwards (screenshots, reports)."""
    folder = Path("test-output") / request.node.name.replace("/", "_")
    folder.mkdir(parents=True, exist_ok=True)
    return folder
