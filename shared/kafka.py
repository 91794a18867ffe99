"""How every service talks to Kafka: one broker factory, one topic set-up, one DLQ.

Every Kafka client of every service and command, FastStream's broker and router as well as the plain
aiokafka producers, consumers and admin clients of the CLI, connects with `client_options(settings)` (or
`broker_options`, FastStream's form of the same): the bootstrap servers, TLS (`ssl_context`) and SASL
(PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) from the KAFKA_* settings. A client that cannot get in is started
with `start_client`, which says why in one sentence (`BrokerAccessError`): a refused login, a certificate
we do not trust, a listener that speaks another protocol, no answer in time. aiokafka itself only says
"Unable to bootstrap", after logging the reason.
"""

import asyncio
import dataclasses
import fcntl
import hashlib
import logging
import re
import socket
import ssl
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import NamedTuple, TypeVar

from aiokafka import ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient, CoordinationType
from aiokafka.conn import collect_hosts, create_conn
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
    for_code,
)
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.metadata import MetadataRequest
from aiokafka.protocol.types import Array, Int16, Int32, Schema, String
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.message import StreamMessage
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from pydantic import BaseModel

from . import topics, unreadable
from .settings import Settings

unreadable.install()  # no record the Kafka client cannot read stops a partition (unreadable.py)

log = logging.getLogger("clients_import.kafka")
T = TypeVar("T")


class BrokerAccessError(KafkaError):
    """Kafka could not be reached, or refused us. `str()` is one sentence naming the setting to check;
    `reason` a short one without names or addresses, for /readyz."""

    retriable = False

    def __init__(self, message: str, reason: str = "the Kafka broker does not answer") -> None:
        super().__init__(message)
        self.reason = reason

    def __str__(self) -> str:
        return self.args[0]


def bootstrap_servers(settings: Settings) -> str:
    if not settings.kafka_bootstrap_servers:
        raise RuntimeError("KAFKA_BOOTSTRAP_SERVERS is not set: start a broker with `clients-import broker`")
    return settings.kafka_bootstrap_servers


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """TLS as KAFKA_SSL_* say: the brokers' certificates checked against KAFKA_SSL_CA_FILE (else the system's CAs),
    our own certificate shown when we have one."""
    try:
        context = ssl.create_default_context(cafile=settings.kafka_ssl_ca_file)
    except (OSError, ssl.SSLError) as error:
        raise BrokerAccessError(f"KAFKA_SSL_CA_FILE {settings.kafka_ssl_ca_file} cannot be used: {_os_reason(error)}",
                                "the Kafka TLS settings cannot be used") from error
    context.check_hostname = settings.kafka_ssl_check_hostname
    if settings.kafka_ssl_cert_file:
        # Never None: OpenSSL would then ask for an encrypted key's password on the terminal, and a service would hang.
        password = settings.kafka_ssl_key_password.get_secret_value() if settings.kafka_ssl_key_password else _no_password
        try:
            context.load_cert_chain(settings.kafka_ssl_cert_file, settings.kafka_ssl_key_file, password)
        except (OSError, ssl.SSLError) as error:
            raise BrokerAccessError(
                f"the client certificate KAFKA_SSL_CERT_FILE {settings.kafka_ssl_cert_file} (key: "
                f"{settings.kafka_ssl_key_file or 'in the same file'}) cannot be used: {_os_reason(error)}; "
                "check the files are PEM, that the key belongs to the certificate, and KAFKA_SSL_KEY_PASSWORD",
                "the Kafka TLS settings cannot be used") from error
    return context


def security_options(settings: Settings) -> dict:
    """aiokafka's keyword arguments for TLS and SASL, the same for a producer, a consumer and an admin client."""
    protocol = settings.kafka_security_protocol
    options: dict = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password.get_secret_value(),
        }
    return options


def client_options(settings: Settings) -> dict:
    """What every aiokafka client we build takes first: where Kafka is and how to get in."""
    return {"bootstrap_servers": bootstrap_servers(settings), **security_options(settings)}


_SASL_SECURITY = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}


def broker_security(settings: Settings) -> BaseSecurity | None:
    """`security_options` as FastStream takes them (it turns them back into aiokafka's arguments)."""
    options = security_options(settings)
    protocol, context = options["security_protocol"], options.get("ssl_context")
    use_ssl = protocol.endswith("SSL")
    if protocol.startswith("SASL_"):
        kind = _SASL_SECURITY[options["sasl_mechanism"]]
        return kind(options["sasl_plain_username"], options["sasl_plain_password"], ssl_context=context, use_ssl=use_ssl)
    return BaseSecurity(ssl_context=context, use_ssl=True) if use_ssl else None


def broker_options(settings: Settings) -> dict:
    """What every service's connection uses, whether a plain broker or FastStream's FastAPI router."""
    return dict(
        bootstrap_servers=bootstrap_servers(settings),
        security=broker_security(settings),
        max_request_size=settings.request_max_bytes,
        max_batch_size=1024 * 1024,
        linger_ms=2,
        # A send retried after a broker restart lost its ack is written once, not twice.
        enable_idempotence=True,
        logger=logging.getLogger("faststream"),
        log_level=logging.DEBUG,
    )


def build_broker(settings: Settings) -> KafkaBroker:
    return KafkaBroker(**broker_options(settings))


async def start_client(client, settings: Settings, timeout: float | None = None):
    """A Kafka client (consumer, producer, admin) started within `timeout`, or closed again; a start that
    fails because Kafka cannot be reached or refuses us raises `BrokerAccessError`, saying why."""
    timeout = timeout or settings.kafka_connect_timeout_s
    try:
        async with asyncio.timeout(timeout):
            await client.start()
    except BaseException as error:
        await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
        if isinstance(error, KafkaConnectionError | OSError | TimeoutError):
            if (problem := await access_problem(settings, timeout)) is not None:
                raise problem from error
        raise
    return client


async def check_access(settings: Settings, timeout: float | None = None) -> None:
    """Raise `BrokerAccessError` unless one of the bootstrap servers lets us in (TLS, then SASL, as configured)."""
    if (problem := await access_problem(settings, timeout)) is not None:
        raise problem


async def access_problem(settings: Settings, timeout: float | None = None) -> BrokerAccessError | None:
    """Why no bootstrap server lets us in, or None when one does: one connection each, each within `timeout`."""
    timeout = timeout or settings.kafka_connect_timeout_s
    try:
        options = security_options(settings)
    except BrokerAccessError as problem:
        return problem
    first: BrokerAccessError | None = None
    for host, port, _ in collect_hosts(bootstrap_servers(settings)):
        try:
            async with asyncio.timeout(timeout):
                connection = await create_conn(host, port, request_timeout_ms=int(timeout * 1000), **options)
                try:  # what a client asks first: a listener that wants a login hangs up here on one without
                    await connection.send(MetadataRequest([]))
                finally:
                    connection.close()
            return None
        except (KafkaError, OSError, TimeoutError) as error:
            first = first or explain(error, f"{host}:{port}", settings, timeout)
    return first


def explain(error: BaseException, where: str, settings: Settings, timeout: float) -> BrokerAccessError:
    """One connection's failure in the operator's terms: what happened and which setting to look at."""
    protocol, mechanism = settings.kafka_security_protocol, settings.kafka_sasl_mechanism
    if isinstance(error, KafkaConnectionError) and isinstance(error.__cause__, ssl.SSLError):
        error = error.__cause__  # TLS 1.3 refuses a client certificate after the handshake, on the first read
    if isinstance(error, SaslAuthenticationFailed | AuthenticationFailedError):
        said = f" (the broker said: {error.args[0]})" if error.args and isinstance(error.args[0], str) else ""
        return BrokerAccessError(
            f"Kafka at {where} refused the {mechanism} login of user {settings.kafka_sasl_username!r}: wrong "
            f"KAFKA_SASL_PASSWORD or KAFKA_SASL_USERNAME, or the user has no {mechanism} credentials there{said}",
            "the Kafka broker refused our SASL login")
    if isinstance(error, UnsupportedSaslMechanismError):
        return BrokerAccessError(f"Kafka at {where} does not take {mechanism} logins: set KAFKA_SASL_MECHANISM to one "
                                 f"it offers ({error})", "the Kafka broker does not take our SASL mechanism")
    if isinstance(error, ssl.SSLCertVerificationError):
        if "hostname" in (error.verify_message or "").lower() or "ip address mismatch" in str(error).lower():
            return BrokerAccessError(
                f"the TLS certificate of Kafka at {where} is not for that name ({error.verify_message}): connect by a "
                "name the certificate holds, or set KAFKA_SSL_CHECK_HOSTNAME=false on a test cluster only",
                "the Kafka broker's TLS certificate is not for its address")
        return BrokerAccessError(
            f"the TLS certificate of Kafka at {where} is not trusted ({error.verify_message}): set KAFKA_SSL_CA_FILE "
            "to the CA that signed it", "the Kafka broker's TLS certificate is not trusted")
    if isinstance(error, ssl.SSLError | ConnectionResetError) and protocol.endswith("SSL"):
        return BrokerAccessError(
            f"the TLS handshake with Kafka at {where} failed ({_os_reason(error)}): does that listener speak TLS, "
            "and does it want a client certificate (KAFKA_SSL_CERT_FILE)?", "the TLS handshake with Kafka failed")
    if isinstance(error, TimeoutError):
        return BrokerAccessError(f"Kafka at {where} did not let us in within {timeout:g} s: is it up, and does that "
                                 f"listener speak {protocol} (KAFKA_SECURITY_PROTOCOL)?")
    if isinstance(error, KafkaConnectionError | ConnectionResetError):  # the broker hung up on what we said
        return BrokerAccessError(
            f"Kafka at {where} closed the connection during the handshake: its listener wants another "
            f"KAFKA_SECURITY_PROTOCOL than {protocol} (SASL_SSL, SASL_PLAINTEXT or SSL on a secured cluster)",
            "the Kafka broker closed the connection: check KAFKA_SECURITY_PROTOCOL")
    if isinstance(error, OSError):
        return BrokerAccessError(f"could not connect to Kafka at {where}: {_os_reason(error)} "
                                 "(KAFKA_BOOTSTRAP_SERVERS)")
    return BrokerAccessError(f"Kafka at {where} did not let us in: {type(error).__name__}: {error}",
                             "the Kafka broker did not let us in")


def _no_password() -> bytes:
    return b""


def _os_reason(error: BaseException) -> str:
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.replace("_", " ").lower()
    return getattr(error, "strerror", None) or str(error) or type(error).__name__


def consumer_options(settings: Settings, service: str) -> dict:
    """Batch consumption with manual commits: offsets move only after the handler returned.

    With `settings.instance_name`, the consumer is a static member of its group (KIP-345): killed and
    started again under the same name, it gets its partitions back at once (measured: 0.1 s), where a
    new dynamic member waits out the dead one's session (15 s) and stalls the whole group meanwhile.
    Its partitions are only handed to the others when its session times out, or when it leaves
    (`leave_groups`, on a clean stop: aiokafka never sends LeaveGroup for a static member).
    """
    return dict(
        group_id=settings.group(service),
        group_instance_id=group_instance_id(settings, service),
        batch=True,
        max_records=settings.batch_max_records,
        batch_timeout_ms=settings.batch_timeout_ms,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        max_partition_fetch_bytes=settings.request_max_bytes,
        fetch_max_bytes=max(50 * 1024 * 1024, settings.request_max_bytes),
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        parser=parse_whatever_the_headers,
        session_timeout_ms=15_000,
        heartbeat_interval_ms=1_000,
        # A job's events are keyed by its id on every topic, so they sit on the same partition number of
        # each: range assignment gives those to one member, and one notifier counts each job alone.
        partition_assignment_strategy=(RangePartitionAssignor,),
    )


_INSTANCE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


async def parse_whatever_the_headers(records: tuple[ConsumerRecord, ...], parse: Callable) -> StreamMessage:
    """FastStream's batch parser reads every header value as UTF-8 before a stage sees the batch. A
    header that is null (a Java producer's `new RecordHeader(name, null)`) or not UTF-8 made it raise,
    and the whole batch vanished: neither processed nor dead-lettered, and the next batch's commit
    moved past it. No stage reads a header: such a batch is parsed with its header values made
    readable (null as empty, bytes that are not UTF-8 replaced), and the records stay as consumed
    (what a dead letter carries, and where a retry seeks)."""
    try:
        return await parse(records)
    except (UnicodeDecodeError, AttributeError):
        message = await parse(tuple(_readable_headers(record) for record in records))
        message.raw_message = records
        return message


def _readable_headers(record: ConsumerRecord) -> ConsumerRecord:
    headers = tuple((name, (value or b"").decode("utf-8", "replace").encode()) for name, value in record.headers)
    return dataclasses.replace(record, headers=headers)


def check_instance_name(name: str) -> str:
    """Kafka takes a group instance id of letters, digits, '.', '_' and '-' only."""
    if not _INSTANCE_NAME.fullmatch(name):
        raise ValueError(f"INSTANCE_NAME {name!r}: use 1 to 100 letters, digits, '.', '_' or '-'")
    return name


def group_instance_id(settings: Settings, service: str) -> str | None:
    """This process's static identity in the stage's group, or None (a dynamic member)."""
    if not settings.instance_name:
        return None
    return f"{check_instance_name(settings.instance_name)}.{service}"


_held_names: list = []  # the lock files of the names this process holds, open until it exits


def claim_instance_name(settings: Settings, services: Iterable[str], folder: Path | None = None) -> str:
    """A name for a `serve` process that did not get INSTANCE_NAME: stable across restarts, unique on the host.

    The host name, then `-1`, `-2`...: the first number no other live process on this host holds for any
    of the same stages (a lock file per group and number in the temporary folder, released by the
    kernel however the process ends). A process killed and started again takes its predecessor's name,
    and so its partitions; two writers on one host get two names. Give each process its INSTANCE_NAME
    where host names are not stable (a new container each start) or several hosts share a name.
    """
    folder = folder or Path(tempfile.gettempdir()) / "clients-import-instances"
    folder.mkdir(parents=True, exist_ok=True)
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:90] or "host"
    groups = sorted({settings.group(service) for service in services})
    for number in range(1000):
        held = []
        for group in groups:
            lock = open(folder / f"{group}.{number}.lock", "a")  # held open for as long as the process lives
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                lock.close()
                break
            held.append(lock)
        else:
            _held_names.extend(held)
            return host if number == 0 else f"{host}-{number}"
        for lock in held:
            lock.close()
    raise RuntimeError(f"no free instance name under {folder}")


class Membership(NamedTuple):
    """Who this process is in one group, as a static member."""

    group: str
    instance: str
    member: str


def static_memberships(broker: KafkaBroker | None) -> list[Membership]:
    """Read before the broker stops: a stopped consumer forgets its member id."""
    found = []
    for subscriber in getattr(broker, "subscribers", ()):
        coordinator = getattr(getattr(subscriber, "consumer", None), "_coordinator", None)
        instance = getattr(coordinator, "_group_instance_id", None)
        if instance:
            if coordinator.member_id:  # else it never joined: nothing to leave
                found.append(Membership(coordinator.group_id, instance, coordinator.member_id))
    return found


class _LeaveGroupResponseV3(Response):
    API_KEY = 13
    API_VERSION = 3
    SCHEMA = Schema(
        ("throttle_time_ms", Int32),
        ("error_code", Int16),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")), ("error_code", Int16))),
    )


class _LeaveGroupRequestV3(RequestStruct):
    API_KEY = 13
    API_VERSION = 3
    RESPONSE_TYPE = _LeaveGroupResponseV3
    SCHEMA = Schema(
        ("group", String("utf-8")),
        ("members", Array(("member_id", String("utf-8")), ("group_instance_id", String("utf-8")))),
    )


class _StaticLeave(Request[_LeaveGroupRequestV3]):
    """LeaveGroup v3 (KIP-345), naming the member by its instance id: aiokafka sends only v0/v1, never for a static member."""

    API_KEY = 13

    def __init__(self, membership: Membership) -> None:
        self.membership = membership

    def build(self, request_struct_class: type[_LeaveGroupRequestV3]) -> _LeaveGroupRequestV3:
        m = self.membership
        return request_struct_class(m.group, [(m.member, m.instance)])


_FENCED = "FencedInstanceId: another process joined under the same name since"  # aiokafka has no class for code 82


async def leave_groups(settings: Settings, memberships: Sequence[Membership], timeout: float = 5.0) -> None:
    """Take this stopped process's static members out of their groups, so the others take its partitions now.

    Naming the member id as well as the instance id, a process that was already replaced by a newer one
    under the same name is refused (fenced) instead of removing its successor. Best effort: when the
    broker does not answer, the session times out as it would have.
    """
    if not memberships:
        return
    client = AIOKafkaClient(**client_options(settings), request_timeout_ms=int(timeout * 1000))
    try:
        async with asyncio.timeout(timeout):
            await client.bootstrap()
            for membership in memberships:
                coordinator = await client.coordinator_lookup(CoordinationType.GROUP, membership.group)
                response = await client.send(coordinator, _StaticLeave(membership))
                errors = [response.error_code, *(code for *_, code in response.members)]
                failed = [_FENCED if code == 82 else for_code(code).__name__ for code in errors if code]
                if failed:
                    log.warning("could not leave group %s as %s: %s", membership.group, membership.instance, ", ".join(failed))
                else:
                    log.info("left group %s as %s", membership.group, membership.instance)
    except (KafkaError, OSError, TimeoutError) as error:
        log.warning("could not leave the groups (%r): their sessions will time out", error)
    finally:
        await client.close()


async def ensure_topics(settings: Settings) -> None:
    """Create the public topics where they are missing. Safe to call from every service.

    The first call to Kafka of every service: it raises `BrokerAccessError` when Kafka refuses us."""
    admin = await start_client(AIOKafkaAdminClient(**client_options(settings)), settings)
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name,
                num_partitions=settings.topic_partitions,
                replication_factor=settings.topic_replication_factor,
                topic_configs={"max.message.bytes": str(settings.request_max_bytes)},
            )
            for name in topics.ALL
            if name not in existing
        ]
        if wanted:
            try:
                await admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another service created them first
    finally:
        await admin.close()


class DeadLetter(NamedTuple):
    record: ConsumerRecord
    stage: str
    reason: str


# Room left in a DLQ record for its key, headers and the batch framing.
_DLQ_ENVELOPE = 16 * 1024
EXCERPT_BYTES = 64 * 1024


def dead_letter_record(letter: DeadLetter, max_bytes: int) -> tuple[bytes, bytes | None, dict[str, str]]:
    """The record as it came when it fits, else a bounded excerpt with its size and digest: it always fits."""
    record = letter.record
    value, key = record.value or b"", record.key
    headers = {
        "dlq.original.topic": record.topic,
        "dlq.original.partition": str(record.partition),
        "dlq.original.offset": str(record.offset),
        "dlq.original.size": str(len(value)),
        "dlq.stage": letter.stage,
        "dlq.reason": letter.reason[:2000],
    }
    if key is not None and len(key) > 1024:
        key = key[:1024]
        headers["dlq.key.excerpt"] = "true"
    if unreadable.is_placeholder(record):  # it holds nothing of the records it stands for
        headers["dlq.unreadable"] = "true"
    if len(value) + _DLQ_ENVELOPE > max_bytes:
        headers["dlq.excerpt"] = "true"
        headers["dlq.original.sha256"] = hashlib.sha256(value).hexdigest()
        value = value[:EXCERPT_BYTES]
    return value, key, headers


async def send_to_dlq(broker: KafkaBroker, letters: Iterable[DeadLetter], max_bytes: int) -> None:
    """Every dead letter handed to the producer at once, then all acks awaited: no round trip each."""
    pending = []
    for letter in letters:
        value, key, headers = dead_letter_record(letter, max_bytes)
        pending.append(await broker.publish(value, topics.DLQ, key=key, headers=headers, no_confirm=True))
    await _confirmed(pending)


class Publication(NamedTuple):
    """One record to publish: where, under which key, and the event itself."""

    topic: str
    event: BaseModel
    key: str | None = None
    partition: int | None = None
    payload: bytes | None = None  # the event already encoded, when the planner had to measure it

    def encoded(self) -> bytes:
        return self.payload if self.payload is not None else self.event.model_dump_json().encode()


JSON_HEADERS = {"content-type": "application/json"}


async def publish_all(broker: KafkaBroker, publications: Iterable[Publication]) -> None:
    """Hand every record to the producer at once, then wait for all acks: no round trip per record."""
    pending = [
        await broker.publish(
            p.encoded(),
            p.topic,
            key=p.key.encode() if p.key else None,
            partition=p.partition,
            headers=JSON_HEADERS,
            no_confirm=True,
        )
        for p in publications
    ]
    await _confirmed(pending)


async def _confirmed(pending: list) -> None:
    """Wait for the broker's acks (the in-memory broker hands back none)."""
    waiting = [p for p in pending if p is not None]
    if waiting:
        await asyncio.gather(*waiting)


def value_of(parse: Callable[[bytes], T]) -> Callable[[ConsumerRecord], T]:
    """Decode a record from its value alone (most topics carry one kind of event)."""
    return lambda record: parse(record.value or b"")


def records_of(message: StreamMessage) -> Sequence[ConsumerRecord]:
    raw = message.raw_message
    return tuple(raw) if isinstance(raw, tuple | list) else (raw,)
