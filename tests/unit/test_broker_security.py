"""A secured Kafka: the KAFKA_* TLS and SASL settings reach every client we build, and a broken set-up is
refused in plain words. (The login itself, on a real broker, is tests/e2e/test_secured_broker.py.)"""

import ast
import logging
import ssl
import subprocess
from pathlib import Path

import aiokafka.client
import pytest
from faststream.kafka.fastapi import KafkaRouter
from faststream.kafka.security import parse_security
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import ValidationError

from clients_import.cli import main
from clients_import.client import ImportClient
from clients_import.dlq import Filters, list_letters, partitions_of, redrive
from clients_import.lag import LagSampler
from clients_import.local_kafka import LocalKafka, ScramUser, _ports
from clients_import.status import collect_status
from shared.kafka import (
    BrokerAccessError,
    Membership,
    broker_options,
    broker_security,
    build_broker,
    ensure_topics,
    leave_groups,
    security_options,
)
from shared.settings import Settings

ROOT = Path(__file__).parents[2]
CLIENT_CLASSES = {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient", "KafkaBroker",
                  "KafkaRouter"}
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"


def _settings(**values) -> Settings:
    return Settings(kafka_bootstrap_servers="127.0.0.1:9", group_prefix="unit", _env_file=None, **values)


SCRAM_OVER_TLS = dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="SCRAM-SHA-256",
                      kafka_sasl_username="crm-import", kafka_sasl_password="pa55 word\"]", kafka_ssl_ca_file=SYSTEM_CAS,
                      kafka_ssl_check_hostname=False)


@pytest.fixture(scope="module")
def client_certificate(tmp_path_factory) -> dict[str, Path | str]:
    """A self-signed client certificate, its key under a password, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "client.pem", folder / "client.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-keyout", str(key), "-out", str(cert),
                    "-subj", "/CN=crm-import", "-days", "1", "-passout", "pass:key-secret"], check=True, capture_output=True)
    return {"cert": cert, "key": key, "password": "key-secret"}


# The settings: whole or refused up front, in the operator's words.

@pytest.mark.parametrize("values, says", [
    (dict(kafka_security_protocol="SASL_SSL"), "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
    (dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_username="u"), "needs KAFKA_SASL_USERNAME and"),
    (dict(kafka_sasl_username="u", kafka_sasl_password="p"), "set it to SASL_SSL"),
    (dict(kafka_ssl_ca_file=SYSTEM_CAS), "set it to SSL or SASL_SSL"),
    (dict(kafka_security_protocol="SSL", kafka_ssl_key_file="k.pem"), "need KAFKA_SSL_CERT_FILE"),
    (dict(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism="GSSAPI", kafka_sasl_username="u",
          kafka_sasl_password="p"), "kafka_sasl_mechanism"),
])
def test_a_half_configured_secured_broker_is_refused_when_the_settings_are_read(values, says):
    with pytest.raises(ValidationError, match=says):
        _settings(**values)


def test_empty_variables_mean_unset_as_docker_compose_passes_them():
    settings = _settings(kafka_sasl_username="", kafka_sasl_password="", kafka_ssl_ca_file="")
    assert security_options(settings) == {"security_protocol": "PLAINTEXT"}


def test_the_password_is_never_shown_by_the_settings():
    settings = _settings(**SCRAM_OVER_TLS)
    assert "pa55" not in repr(settings) and "pa55" not in str(settings.model_dump())
    with pytest.raises(ValidationError) as refused:  # a setting refused: its message repeats no value
        _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_password="supersecret")
    assert "supersecret" not in str(refused.value)


def test_a_command_run_with_broken_settings_says_which_setting_and_exits_2(monkeypatch, capsys):
    from shared.settings import get_settings

    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "u")
    get_settings.cache_clear()
    try:
        assert main(["contract"]) == 2
    finally:
        get_settings.cache_clear()
    assert "KAFKA_SASL_PASSWORD" in capsys.readouterr().err


# The options: one place builds them, for aiokafka and for FastStream alike.

@pytest.mark.parametrize("values", [
    {},
    dict(kafka_security_protocol="SSL", kafka_ssl_ca_file=SYSTEM_CAS),
    dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="PLAIN", kafka_sasl_username="u",
         kafka_sasl_password="p"),
    dict(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username="u",
         kafka_sasl_password="p"),
    SCRAM_OVER_TLS,
])
def test_faststream_gets_the_same_security_as_the_plain_clients(values):
    settings = _settings(**values)
    plain = security_options(settings)
    streamed = parse_security(broker_security(settings)) or {"security_protocol": "PLAINTEXT"}
    assert _comparable(streamed) == _comparable(plain)
    connection = {"security_protocol": "PLAINTEXT",  # aiokafka's default
                  **build_broker(settings)._connection_kwargs}  # what FastStream hands its producer and consumers
    assert _comparable({k: connection.get(k) for k in plain}) == _comparable(plain)


def _comparable(options: dict) -> dict:
    """Two SSL contexts built from the same settings are equal when they check the same way."""
    out = {k: v for k, v in options.items() if v is not None}
    if "ssl_context" in out:
        context = out["ssl_context"]
        out["ssl_context"] = (context.verify_mode, context.check_hostname, len(context.get_ca_certs()))
    return out


def test_tls_checks_the_brokers_certificate_and_its_name_unless_told_not_to():
    context = security_options(_settings(kafka_security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.minimum_version >= ssl.TLSVersion.TLSv1_2
    relaxed = security_options(_settings(kafka_security_protocol="SSL", kafka_ssl_check_hostname=False))["ssl_context"]
    assert relaxed.verify_mode == ssl.CERT_REQUIRED and not relaxed.check_hostname


def test_a_client_certificate_with_its_key_password_is_loaded(client_certificate):
    settings = _settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=client_certificate["cert"],
                         kafka_ssl_key_file=client_certificate["key"], kafka_ssl_key_password=client_certificate["password"])
    assert isinstance(security_options(settings)["ssl_context"], ssl.SSLContext)


def test_a_wrong_key_password_or_a_missing_ca_file_is_said_plainly_without_the_password(client_certificate):
    wrong = _settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=client_certificate["cert"],
                      kafka_ssl_key_file=client_certificate["key"], kafka_ssl_key_password="not-the-key-secret")
    with pytest.raises(BrokerAccessError, match="KAFKA_SSL_KEY_PASSWORD") as refused:
        security_options(wrong)
    assert "not-the-key-secret" not in str(refused.value)
    without = _settings(kafka_security_protocol="SSL", kafka_ssl_cert_file=client_certificate["cert"],
                        kafka_ssl_key_file=client_certificate["key"])  # an encrypted key: refused, never a prompt
    with pytest.raises(BrokerAccessError, match="KAFKA_SSL_KEY_PASSWORD"):
        security_options(without)
    with pytest.raises(BrokerAccessError, match="KAFKA_SSL_CA_FILE /nowhere/ca.pem cannot be used: No such file"):
        security_options(_settings(kafka_security_protocol="SSL", kafka_ssl_ca_file="/nowhere/ca.pem"))


# Every client of every service and command connects with them: recorded where aiokafka opens a connection.

@pytest.fixture
def connections(monkeypatch) -> list[dict]:
    """Each connection a Kafka client tries to the test's address (127.0.0.1:9), with its options; each is
    refused at once. (Clients of other tests still running in this event loop are let through unseen.)"""
    tried: list[dict] = []
    real = aiokafka.client.create_conn

    async def refuse(host, port, **options):
        if (host, port) != ("127.0.0.1", 9):
            return await real(host, port, **options)
        tried.append(options)
        raise ConnectionRefusedError(111, "refused by the test")

    monkeypatch.setattr(aiokafka.client, "create_conn", refuse)
    return tried


def _assert_secured(tried: list[dict], settings: Settings) -> None:
    assert tried, "no connection was tried"
    wanted = _comparable(security_options(settings))
    for options in tried:
        assert _comparable({k: options.get(k) for k in wanted}) == wanted


async def _fails(call) -> None:
    with pytest.raises(Exception):  # noqa: B017 - what matters is what it tried
        await call


async def test_every_client_of_every_service_and_command_logs_in_as_configured(connections, tmp_path, caplog):
    settings = _settings(**SCRAM_OVER_TLS, database_url=f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    caplog.set_level(logging.CRITICAL)
    entry_points = {
        "topic creation (every service's start)": lambda: ensure_topics(settings),
        "the pipeline's FastStream broker": lambda: build_broker(settings).start(),
        "the API's publisher (FastStream's router)": lambda: KafkaRouter(**broker_options(settings)).broker.start(),
        "run and watch (the partner's client)": lambda: ImportClient(settings).__aenter__(),
        "consumer lag": lambda: LagSampler(settings, {"unit.writer": ("clients.import.rows",)}).sample(),
        "status": lambda: collect_status(settings, timeout=2),
        "dlq list and show": lambda: list_letters(settings, Filters(), 5, timeout=2),
        "dlq partitions": lambda: partitions_of(settings, "clients.import.dlq", 2),
        "dlq redrive": lambda: redrive(settings, Filters(), 1, timeout=2),
    }
    for name, call in entry_points.items():
        connections.clear()
        await _fails(call())
        _assert_secured(connections, settings)
        assert name
    connections.clear()
    await leave_groups(settings, [Membership("unit.writer", "host-1.writer", "member-1")], timeout=2)  # best effort
    _assert_secured(connections, settings)


def test_every_kafka_client_in_the_product_is_built_from_the_shared_options():
    """A new producer, consumer or admin client that forgets the options would connect without TLS or SASL."""
    unsecured = []
    for path in [*ROOT.glob("shared/*.py"), *ROOT.glob("clients_import/*.py"), *ROOT.glob("services/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in CLIENT_CLASSES:
                spread = [k.value for k in node.keywords if k.arg is None and isinstance(k.value, ast.Call)]
                if not any(getattr(s.func, "id", "") in ("client_options", "broker_options") for s in spread):
                    unsecured.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert unsecured == []


# The local broker's SCRAM listener, as written for Kafka (started for real in tests/e2e).

def test_the_local_broker_with_scram_listens_on_sasl_plaintext_only_and_never_puts_the_password_on_its_command_line(
        tmp_path):
    kafka = LocalKafka(scram=ScramUser("crm-import", "s3cret,]\"="))
    kafka.workdir = tmp_path
    properties = kafka._properties(9092, 9093)
    assert "listeners=SASL_PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093" in properties
    assert "sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512" in properties
    assert "PLAINTEXT://127.0.0.1:9092" not in properties.replace("SASL_PLAINTEXT://", "")
    arguments = " ".join(kafka._scram_arguments())
    assert "s3cret" not in arguments and "s3cret" not in properties
    assert arguments.count("name=crm-import,") == 2  # SCRAM-SHA-256 and SCRAM-SHA-512
    assert _ports(properties) == (9092, 9093)


@pytest.mark.parametrize("name", ["a b", "x,y", "a]", "", "local-broker"])
def test_a_scram_user_name_the_format_tool_would_misread_is_refused(name):
    with pytest.raises(RuntimeError):
        LocalKafka(scram=ScramUser(name, "p"))


# Any combination an operator may write: refused when read, or refused when used, or the same for every client.

@hypothesis_settings(max_examples=200, deadline=None)
@given(protocol=st.sampled_from(["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL", "TLS", ""]),
       mechanism=st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "scram-sha-256"]),
       username=st.one_of(st.none(), st.text(max_size=300)), password=st.one_of(st.none(), st.text(max_size=50)),
       ca=st.sampled_from([None, "", SYSTEM_CAS, "/nowhere/ca.pem", "/etc/hostname"]),
       check_hostname=st.booleans())
def test_any_broker_settings_are_refused_plainly_or_reach_every_client_alike(protocol, mechanism, username, password,
                                                                            ca, check_hostname):
    try:
        configured = _settings(kafka_security_protocol=protocol, kafka_sasl_mechanism=mechanism,
                               kafka_sasl_username=username, kafka_sasl_password=password, kafka_ssl_ca_file=ca,
                               kafka_ssl_check_hostname=check_hostname)
    except ValidationError as refused:
        assert not password or len(password) < 8 or password not in str(refused)
        return
    try:
        plain = security_options(configured)
    except BrokerAccessError as refused:
        assert "KAFKA_SSL_CA_FILE" in str(refused)
        return
    assert _comparable(parse_security(broker_security(configured)) or {"security_protocol": "PLAINTEXT"}) == \
        _comparable(plain)
    if protocol.startswith("SASL_"):
        assert (plain["sasl_plain_username"], plain["sasl_plain_password"]) == (username, password)
