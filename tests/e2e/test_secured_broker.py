"""The product on a Kafka that takes only SCRAM logins (SASL_PLAINTEXT), as a managed or company cluster does:
the pipeline imports a file, `status` reads the groups, and a wrong password ends at once with a clear sentence."""

import asyncio
import json
import time
import uuid
from pathlib import Path

import pytest

from clients_import.client import ImportClient
from clients_import.local_kafka import free_port
from clients_import.pipeline import Pipeline
from clients_import.status import UNREACHABLE, show_status
from shared.events import JobStatus
from shared.kafka import BrokerAccessError, check_access
from shared.settings import Settings

from .command_line import operator_env, run_cli
from .conftest import Partner, SecuredKafka, clients_of, unique_domain

REFUSED_WITHIN_S = 5  # a refused login ends a start within this (measured: 0.3 s): no retry loop
COMMAND_WITHIN_S = 60  # a whole command, Python's own start included, on a machine two cores busy


def _secured(kafka: SecuredKafka, tmp_path: Path, mechanism: str = "SCRAM-SHA-256", password: str | None = None,
             **values) -> Settings:
    return Settings(
        kafka_bootstrap_servers=kafka.bootstrap, kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=kafka.username, kafka_sasl_password=password or kafka.password,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'secured.db'}", group_prefix=f"sasl-{uuid.uuid4().hex[:8]}",
        job_signing_secret=uuid.uuid4().hex, instance_name=None, _env_file=None, **values)




async def test_the_pipeline_imports_a_file_on_a_broker_that_takes_only_scram_logins(secured_kafka, tmp_path):
    settings = _secured(secured_kafka, tmp_path)
    d = unique_domain()
    async with asyncio.timeout(180):
        async with Pipeline(settings) as pipeline, ImportClient(settings) as client:
            note = await Partner(client, settings.signing_key).run(f"firstName,email\nAnn,ann@{d}\nBen,ben@{d}\n")
            assert (note.status, note.created) == (JobStatus.COMPLETED, 2), note

            # `status` logs in with the other SCRAM mechanism, and sees the stages' groups with their members.
            other = settings.model_copy(update={"kafka_sasl_mechanism": "SCRAM-SHA-512"})
            code, out, err, _ = await run_cli(operator_env(other), "status", "--json", "--newest", "5")
            assert code in (0, 1), err[-2000:]
            document = json.loads(out)
            groups = {g["stage"]: g for g in document["groups"]}
            assert set(groups) == {"uploader", "validator", "writer", "notifier"}
            assert all(g["members"] for g in groups.values()), groups
            assert all(g["group"].startswith(settings.group_prefix) for g in groups.values())
        assert set(await clients_of(pipeline.engine, d)) == {f"ann@{d}", f"ben@{d}"}
        await pipeline.engine.dispose()


async def test_a_client_without_credentials_is_turned_away_and_told_why(secured_kafka, tmp_path):
    plain = Settings(kafka_bootstrap_servers=secured_kafka.bootstrap, _env_file=None)
    with pytest.raises(BrokerAccessError, match="closed the connection during the handshake: its listener wants "
                                                "another KAFKA_SECURITY_PROTOCOL than PLAINTEXT"):
        async with asyncio.timeout(REFUSED_WITHIN_S):
            await check_access(plain)
    await check_access(_secured(secured_kafka, tmp_path))  # the right login gets in


async def test_a_wrong_password_is_refused_at_once_with_a_clear_message(secured_kafka, tmp_path, capsys):
    wrong = _secured(secured_kafka, tmp_path, mechanism="SCRAM-SHA-512", password="not-the-password")
    says = (f"Kafka at {secured_kafka.bootstrap} refused the SCRAM-SHA-512 login of user '{secured_kafka.username}': "
            "wrong KAFKA_SASL_PASSWORD or KAFKA_SASL_USERNAME")

    # A service's pipeline, the partner's client (`run`, `watch`) and `status`: refused at once, not retried.
    for name, attempt in {"pipeline": lambda: Pipeline(wrong).start(),
                          "client": lambda: ImportClient(wrong).__aenter__()}.items():
        started = time.monotonic()
        with pytest.raises(BrokerAccessError) as refused:
            await attempt()
        assert str(refused.value).startswith(says), (name, refused.value)
        assert time.monotonic() - started < REFUSED_WITHIN_S, name
    started = time.monotonic()
    assert await show_status(wrong, as_json=True) == UNREACHABLE
    assert time.monotonic() - started < REFUSED_WITHIN_S
    assert says in capsys.readouterr().err

    # The commands and services as processes: a non-zero exit and the sentence, never the password.
    for command in (["status", "--json"], ["dlq", "list"], ["watch"], ["serve", "writer"]):
        code, out, err, took = await run_cli(operator_env(wrong), *command, timeout=COMMAND_WITHIN_S)
        assert code == 3, (command, code, err[-2000:])
        assert says in err, (command, err[-2000:])
        assert "not-the-password" not in err + out

    # `serve` with the HTTP API: uvicorn gives up on the start (and would exit 0): the command still fails.
    code, out, err, _ = await run_cli(operator_env(wrong, API_DEV_MODE="true", API_PORT=str(free_port())), "serve",
                                   timeout=COMMAND_WITHIN_S)
    assert code == 3 and says in err, err[-2000:]
    assert "not-the-password" not in err + out


async def test_readiness_names_a_refused_login(secured_kafka, tmp_path):
    """A running service whose password stops working (rotated, revoked) says so on /readyz."""
    wrong = _secured(secured_kafka, tmp_path, password="rotated-away")
    pipeline = Pipeline(wrong, services=("writer",))
    pipeline.broker, pipeline._phase = _NoAnswer(), None  # as if started, with a broker that no longer lets us in
    try:
        assert await pipeline.readiness() == "the Kafka broker refused our SASL login"
    finally:
        await pipeline.engine.dispose()


class _NoAnswer:
    async def ping(self, timeout: float) -> bool:
        return False
