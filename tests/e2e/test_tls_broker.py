"""The product on a Kafka that wants TLS, a client certificate and a SCRAM login (SASL_SSL with mTLS), as a
company cluster may: the pipeline imports a file, `status` reads the groups, and each TLS mistake is named."""

import asyncio
import json
import uuid
from pathlib import Path

import pytest

from clients_import.client import ImportClient
from clients_import.pipeline import Pipeline
from shared.events import JobStatus
from shared.kafka import BrokerAccessError, check_access
from shared.settings import Settings

from .command_line import operator_env, run_cli
from .conftest import Partner, TlsKafka, clients_of, unique_domain


def _tls(kafka: TlsKafka, tmp_path: Path, **values) -> Settings:
    c = kafka.certificates
    return Settings(**{
        "kafka_bootstrap_servers": kafka.bootstrap, "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512", "kafka_sasl_username": kafka.username,
        "kafka_sasl_password": kafka.password, "kafka_ssl_ca_file": c.ca, "kafka_ssl_cert_file": c.client_cert,
        "kafka_ssl_key_file": c.client_key, "database_url": f"sqlite+aiosqlite:///{tmp_path / 'tls.db'}",
        "group_prefix": f"tls-{uuid.uuid4().hex[:8]}", "job_signing_secret": uuid.uuid4().hex, "instance_name": None,
        "_env_file": None, **values})


async def _status(settings: Settings) -> tuple[int, str, str]:
    code, out, err, _ = await run_cli(operator_env(settings), "status", "--json", "--newest", "5")
    return code, out, err


async def test_the_pipeline_imports_a_file_over_tls_with_a_client_certificate_and_a_scram_login(tls_kafka, tmp_path):
    settings = _tls(tls_kafka, tmp_path)
    d = unique_domain()
    async with asyncio.timeout(180):
        async with Pipeline(settings) as pipeline, ImportClient(settings) as client:
            note = await Partner(client, settings.signing_key).run(f"firstName,email\nAnn,ann@{d}\n")
            assert (note.status, note.created) == (JobStatus.COMPLETED, 1), note
            code, out, err = await _status(settings)
            assert code in (0, 1), err[-2000:]
            groups = json.loads(out)["groups"]
            assert len(groups) == 4 and all(g["members"] for g in groups), groups
        assert set(await clients_of(pipeline.engine, d)) == {f"ann@{d}"}
        await pipeline.engine.dispose()


@pytest.mark.parametrize("change, says", [
    (lambda k: {"kafka_ssl_ca_file": k.certificates.other_ca},
     "is not trusted (unable to get local issuer certificate): set KAFKA_SSL_CA_FILE to the CA that signed it"),
    (lambda k: {"kafka_ssl_ca_file": None, "kafka_ssl_cert_file": None, "kafka_ssl_key_file": None},
     "is not trusted"),  # the system's CAs do not know a company's own CA
    (lambda k: {"kafka_bootstrap_servers": k.bootstrap.replace("127.0.0.1", "localhost")},
     "is not for that name (Hostname mismatch, certificate is not valid for 'localhost'.)"),
    (lambda k: {"kafka_ssl_cert_file": None, "kafka_ssl_key_file": None},
     "does it want a client certificate (KAFKA_SSL_CERT_FILE)?"),
    (lambda k: {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_ssl_ca_file": None, "kafka_ssl_cert_file": None,
                "kafka_ssl_key_file": None},
     "closed the connection during the handshake: its listener wants another KAFKA_SECURITY_PROTOCOL than SASL_PLAINTEXT"),
])
async def test_each_tls_mistake_is_named_at_once(tls_kafka, tmp_path, change, says):
    wrong = _tls(tls_kafka, tmp_path, **change(tls_kafka))
    with pytest.raises(BrokerAccessError) as refused:
        async with asyncio.timeout(5):
            await check_access(wrong)
    assert says in str(refused.value)


async def test_a_command_with_an_untrusted_certificate_exits_3_and_says_so(tls_kafka, tmp_path):
    code, _, err = await _status(_tls(tls_kafka, tmp_path, kafka_ssl_ca_file=tls_kafka.certificates.other_ca))
    assert code == 3 and "set KAFKA_SSL_CA_FILE to the CA that signed it" in err, err[-2000:]
