"""A real single-node Apache Kafka (KRaft, broker and controller in one JVM) on free loopback ports.

The jars come from Maven Central through the pom beside this file, into ~/.cache/clients-import;
the log directory is a fresh temporary folder, removed on stop, or `data_dir`, kept: a broker
started again on it (`restart()`, or a new LocalKafka given the same folder) has the same ports,
cluster id, topics, records and committed offsets. The JVM dies with the process that started it.

With `scram=ScramUser(name, password)` the client listener is SASL_PLAINTEXT and takes only SCRAM-SHA-256
and SCRAM-SHA-512 logins (a company or managed Kafka's usual set-up, without TLS); the user's credentials
(both mechanisms) are written into the cluster metadata when the storage is formatted (KIP-900), as a salt
and a salted password computed here: the password itself never reaches the JVM's command line. The
controller listener stays PLAINTEXT, on loopback.

With `tls=TlsFiles(...)` the client listener speaks TLS too (SSL, or SASL_SSL with `scram`), with the given PEM
key and certificate chain; `client_auth` makes it require a client certificate signed by the given CA (mTLS).
"""

import atexit
import base64
import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import NamedTuple

KAFKA_VERSION = "4.4.0"
READY_LINE = "Kafka Server started"
SCRAM_MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
SCRAM_ITERATIONS = 4096  # Kafka's default, and the least it accepts
_SCRAM_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # no character the --add-scram syntax would need quoted
_BROKER_USER = "local-broker"  # the broker's own login to its SASL listener


class TlsFiles(NamedTuple):
    """The broker's TLS: its key and certificate chain in one PEM file (unencrypted PKCS#8 key first), and the CA
    it trusts for client certificates (and for its own connections to itself)."""

    keystore: Path
    ca: Path
    client_auth: bool = False


class ScramUser(NamedTuple):
    """A SCRAM login the local broker accepts."""

    name: str
    password: str


class BrokerError(RuntimeError):
    """The local broker could not be fetched or did not start."""


def cache_dir() -> Path:
    root = os.environ.get("CLIENTS_IMPORT_CACHE") or Path.home() / ".cache" / "clients-import"
    return Path(root) / f"kafka-{KAFKA_VERSION}"


def ensure_jars() -> Path:
    """The broker's runtime classpath, fetched once with Maven and reused after that."""
    cache = cache_dir()
    lib, done = cache / "lib", cache / ".complete"
    if done.exists():
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test runs starting at once fetch once
        if done.exists():
            return lib
        if not shutil.which("mvn") or not shutil.which("java"):
            raise BrokerError("Kafka needs Java 17+ and Maven on PATH (apt-get install openjdk-17-jre-headless maven)")
        staging = cache / "lib.partial"
        shutil.rmtree(staging, ignore_errors=True)
        with resources.as_file(resources.files("clients_import") / "kafka" / "pom.xml") as pom:
            result = subprocess.run(
                ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
                 "-DincludeScope=runtime", f"-DoutputDirectory={staging}"],
                capture_output=True, text=True,
            )
        if result.returncode != 0:
            raise BrokerError(f"Maven could not fetch Kafka {KAFKA_VERSION}:\n{result.stdout[-3000:]}{result.stderr[-3000:]}")
        shutil.rmtree(lib, ignore_errors=True)
        staging.rename(lib)
        done.touch()
    return lib


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: the sockets are held together, so the system cannot hand out one
    port twice (asked one at a time it may, and Kafka refuses two listeners on one port)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _die_with_parent() -> None:
    # Linux: the JVM gets SIGTERM when the process that started it dies, however it dies.
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalKafka:
    """Start with `start()` (or `with LocalKafka() as kafka:`), read `bootstrap`, then `stop()`.

    `restart()` stops the JVM (gracefully, or with SIGKILL: `kill=True`) and starts it again on the same
    log directory and ports, so clients reconnect to the same address and find everything where it was.
    """

    def __init__(
        self, heap: str = "512m", max_message_bytes: int = 16 * 1024 * 1024, partitions: int = 4,
        data_dir: Path | str | None = None, scram: ScramUser | None = None, tls: TlsFiles | None = None,
    ) -> None:
        if scram is not None and not _SCRAM_NAME.fullmatch(scram.name):
            raise BrokerError(f"SCRAM user name {scram.name!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
        if scram is not None and not scram.password:
            raise BrokerError("a SCRAM user needs a password")
        if scram is not None and scram.name == _BROKER_USER:
            raise BrokerError(f"SCRAM user name {_BROKER_USER!r} is the local broker's own: choose another")
        self.scram, self.tls = scram, tls
        self.heap = heap
        self.max_message_bytes = max_message_bytes
        self.partitions = partitions
        self.data_dir = Path(data_dir) if data_dir is not None else None  # kept on stop, unlike a temporary one
        self.bootstrap = ""
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.cluster_id: str | None = None
        self._log_start = 0  # where this start's lines begin in broker.log

    def __enter__(self) -> "LocalKafka":
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def log_path(self) -> Path | None:
        return self.workdir / "broker.log" if self.workdir else None

    def start(self, timeout: float = 120.0) -> str:
        lib = ensure_jars()
        if self.workdir is None:
            if self.data_dir is not None:
                self.data_dir.mkdir(parents=True, exist_ok=True)
                self.workdir = self.data_dir
            else:
                self.workdir = Path(tempfile.mkdtemp(prefix="clients-import-kafka-"))
        atexit.register(self.stop)
        props = self.workdir / "server.properties"
        classpath = f"{lib}/*"
        meta = self.workdir / "data" / "meta.properties"
        if meta.exists() and props.exists():  # a log directory of an earlier run: its ports and cluster id
            port, controller = _ports(props.read_text())
            self.cluster_id = _read_properties(meta.read_text()).get("cluster.id")
        else:
            port, controller = free_ports(2)
            props.write_text(self._properties(port, controller))
            self.cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
            fmt = subprocess.run(
                ["java", "-cp", classpath, *self._logging(), "kafka.tools.StorageTool", "format",
                 f"--cluster-id={self.cluster_id}", "-c", str(props),  # '=': an id may start with '-'
                 *self._scram_arguments()],
                capture_output=True, text=True,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting Kafka storage failed:\n{fmt.stdout}{fmt.stderr}")
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "a")  # appended on a restart: the ready line is looked for past _log_start
        self.process = subprocess.Popen(
            ["java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
             "-cp", classpath, *self._logging(), "kafka.Kafka", str(props)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent,
        )
        log.close()
        self.bootstrap = f"127.0.0.1:{port}"
        self._wait_ready(port, timeout)
        return self.bootstrap

    def _logging(self) -> list[str]:
        with resources.as_file(resources.files("clients_import") / "kafka" / "log4j2.properties") as config:
            return [f"-Dlog4j2.configurationFile={config}", "-Dlog4j2.disable.jmx=true"]

    @property
    def security_protocol(self) -> str:
        """What a client must speak on `bootstrap`."""
        return ("SASL_" if self.scram else "") + ("SSL" if self.tls else "PLAINTEXT")

    def _broker_password(self) -> str:
        if not hasattr(self, "_own_password"):
            self._own_password = secrets.token_hex(24)
        return self._own_password

    def _scram_arguments(self) -> list[str]:
        """`--add-scram` for each mechanism and user: the salted password, as Kafka stores it (RFC 5802's Hi)."""
        if self.scram is None:
            return []
        arguments = []
        for user in (self.scram, ScramUser(_BROKER_USER, self._broker_password())):
            for mechanism, digest in SCRAM_MECHANISMS.items():
                arguments += ["--add-scram", f"{mechanism}={_salted(user, digest)}"]
        return arguments

    def _properties(self, port: int, controller: int) -> str:
        client = self.security_protocol
        settings = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "listeners": f"{client}://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"{client}://127.0.0.1:{port}",
            "inter.broker.listener.name": client,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": f"{client}:{client},CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "log.dirs": str(self.workdir / "data"),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": "false",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "message.max.bytes": str(self.max_message_bytes),
            "replica.fetch.max.bytes": str(self.max_message_bytes),
        }
        if self.scram:
            # Kafka insists on an inter-broker login even on one node: the broker's own user, not the client's.
            login = (f'org.apache.kafka.common.security.scram.ScramLoginModule required '
                     f'username="{_BROKER_USER}" password="{self._broker_password()}";')
            settings |= {
                "sasl.enabled.mechanisms": ",".join(SCRAM_MECHANISMS),
                "sasl.mechanism.inter.broker.protocol": "SCRAM-SHA-512",
                **{f"listener.name.{client.lower()}.{m.lower()}.sasl.jaas.config": login for m in SCRAM_MECHANISMS},
            }
        if self.tls:
            settings |= {
                "ssl.keystore.type": "PEM",
                "ssl.keystore.location": str(self.tls.keystore),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.location": str(self.tls.ca),
                # With the listener's prefix: on a SASL_SSL listener Kafka ignores the plain setting.
                f"listener.name.{client.lower()}.ssl.client.auth": "required" if self.tls.client_auth else "none",
            }
        return "".join(f"{key}={value}\n" for key, value in settings.items())

    def _wait_ready(self, port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = self._log_of_this_start()[-4000:]
                self.stop()
                raise BrokerError(f"Kafka exited with code {self.process.returncode} while starting:\n{tail}")
            if READY_LINE in self._log_of_this_start() and _answers(port):
                return
            time.sleep(0.1)
        tail = self._log_of_this_start()[-4000:]
        self.stop()
        raise BrokerError(f"Kafka did not answer within {timeout:.0f} s:\n{tail}")

    def _log_of_this_start(self) -> str:
        with open(self.log_path, errors="replace") as log:
            log.seek(self._log_start)
            return log.read()

    def restart(self, timeout: float = 120.0, kill: bool = False) -> str:
        """Stop the JVM (SIGKILL with `kill`: no clean shutdown) and start it again on the same log directory and ports."""
        if self.workdir is None:
            raise BrokerError("restart() needs a broker that was started")
        self._halt(kill)
        return self.start(timeout)

    def _halt(self, kill: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            if kill:
                self.process.kill()
            else:
                self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop the JVM; remove the log directory unless it is `data_dir`."""
        self._halt()
        if self.workdir is not None:
            if self.data_dir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)


def _read_properties(text: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def _ports(properties: str) -> tuple[int, int]:
    """The clients' and the controller's ports, from the listeners of a server.properties we wrote."""
    listeners = dict(
        (name, int(address.rsplit(":", 1)[1]))
        for name, address in (item.split("://", 1) for item in _read_properties(properties)["listeners"].split(","))
    )
    controller = listeners.pop("CONTROLLER")
    return next(iter(listeners.values())), controller


def _salted(user: ScramUser, digest: str) -> str:
    salt = os.urandom(32)
    salted = hashlib.pbkdf2_hmac(digest, user.password.encode(), salt, SCRAM_ITERATIONS)
    return (f'[name={user.name},iterations={SCRAM_ITERATIONS},salt="{base64.b64encode(salt).decode()}",'
            f'saltedpassword="{base64.b64encode(salted).decode()}"]')


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False
