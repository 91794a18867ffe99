"""Configuration, read from the environment (or a .env file) once per process."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .callbacks import parse_destinations
from .fields import CLIENT_TYPES

MIN_TOKEN_CHARS = 32  # an API_TOKEN that guessing, even unlimited, cannot find


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's message never repeats the values (a password, a DATABASE_URL's).
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True)

    kafka_bootstrap_servers: str | None = Field(
        default=None, description="Kafka to use; unset means `clients-import run` starts a local broker"
    )
    database_url: str = "sqlite+aiosqlite:///data/clients.db"

    max_records: int = Field(default=5000, ge=1, description="records per file, blank lines excluded")
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, description="bytes per file")
    chunk_rows: int = Field(default=500, ge=1, description="records per chunk on clients.import.chunks")
    max_columns: int = Field(default=500, ge=2, description="columns in a file's header")
    max_header_chars: int = Field(default=200, ge=16, description="characters in one column name")
    max_record_chars: int = Field(default=65_536, ge=1024, description="characters in one record (row) of a file")
    chunk_max_bytes: int = Field(
        default=1024 * 1024, ge=64 * 1024,
        description="JSON bytes of a chunk, and so of each row record cut from it (a chunk ends at the first bound reached)",
    )
    client_types: tuple[str, ...] = CLIENT_TYPES

    topic_partitions: int = Field(default=4, ge=1)
    topic_replication_factor: int = Field(default=1, ge=1, description="for the topics we create; 3 on a real cluster")
    group_prefix: str = "clients-import"
    fetch_max_wait_ms: int = Field(default=100, ge=0, description="how long the broker holds a fetch that has no data yet")
    batch_timeout_ms: int = Field(default=5, ge=0, description="how long a service waits to fill a batch")
    batch_max_records: int = Field(default=500, ge=1, description="Kafka records per consumed batch")

    progress_interval_s: float = Field(default=0.25, description="least time between two progress events of a job")
    first_errors: int = Field(default=20, description="errors quoted in a notification")
    job_deadline_s: float = Field(default=600.0, description="a job still processing after this fails")
    undo_retention_days: float = Field(default=30.0, gt=0, description=(
        "an import can be undone for this long; the values it overwrote are purged a day after"))

    webhook_secret: str | None = Field(default=None, description="signs callback POSTs (HMAC-SHA256)")
    webhook_attempts: int = Field(default=5, ge=1)
    webhook_backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles each time")
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_allow_http: bool = Field(default=False, description="accept plain http:// callback URLs (development only)")
    webhook_allowed_destinations: str = Field(
        default="", max_length=10_000,
        description="comma-separated host or host:port called back whatever their address (a receiver on a "
                    "private network, 127.0.0.1 in tests); every other callback must resolve to public addresses",
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: str | None = None
    api_dev_mode: bool = Field(default=False, description="allow the API to start without API_TOKEN")
    job_signing_secret: str | None = Field(
        default=None, description="signs the job ids our API and CLI name (API_TOKEN when unset)"
    )

    metrics_host: str = Field(default="127.0.0.1", description="where each service process serves /metrics, /healthz, /readyz")
    metrics_port: int | None = Field(default=None, ge=0, le=65535,
                                     description="the metrics server's port; unset: none; 0: a free port, logged")
    instance_name: str | None = Field(
        default=None, max_length=100, pattern=r"^[A-Za-z0-9._-]*$",
        description="a stable name for this process (static group membership: a restart keeps its partitions); "
                    "empty: dynamic membership",
    )
    session_ttl_s: float = Field(default=8 * 3600, gt=0, description="how long a page session lasts")
    signin_attempts: int = Field(default=10, ge=1, description="failed sign-ins per client address per window; then 429")
    signin_window_s: float = Field(default=60.0, gt=0, description="the window failed sign-ins are counted in")
    signin_addresses: int = Field(
        default=10_000, ge=1,
        description="client addresses whose failed sign-ins are tracked at once; beyond, new addresses share one budget",
    )
    # The API's front door (services/api/limits.py): what one request may take of the server, in time and bytes.
    api_head_timeout_s: float = Field(default=10.0, gt=0, description="time to receive a request's line and headers")
    api_body_timeout_s: float = Field(default=120.0, gt=0, description="time to receive a request's whole body")
    api_body_stall_s: float = Field(default=10.0, gt=0, description="longest silence between two pieces of a body")
    api_max_head_bytes: int = Field(default=16 * 1024, ge=1024, description="bytes of a request's line and headers")
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024,
                                    description="bytes of a request body, uploads aside (they have max_bytes)")
    api_max_connections: int = Field(default=1000, ge=1, description=(
        "connections the API holds at once; one more is answered 503 too_many_connections and closed"))
    api_preview_concurrency: int = Field(default=2, ge=1, description=(
        "previews (POST /imports/preview) the API reads at once, each holding up to a file's size in memory and more; "
        "one more is answered 503 preview_busy with Retry-After"))

    log_level: str = "INFO"

    # How every Kafka client of every service and command connects (shared.kafka.client_options): Kafka's own
    # names (security.protocol, sasl.mechanism, ssl.*), so a managed or company cluster's settings carry over.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT", description="SASL_SSL for a managed Kafka; SSL for TLS (and client certificates) alone")
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        default="SCRAM-SHA-512", description="with SASL_*: how we log in (PLAIN sends the password as it is: only over TLS)")
    kafka_sasl_username: str | None = Field(default=None, max_length=256, description="with SASL_*")
    kafka_sasl_password: SecretStr | None = Field(default=None, description="with SASL_*; never logged nor printed")
    kafka_ssl_ca_file: Path | None = Field(
        default=None, description="with SSL or SASL_SSL: PEM file of the CA(s) that signed the brokers' certificates; "
                                  "unset: the system's trusted CAs")
    kafka_ssl_cert_file: Path | None = Field(default=None, description="with SSL or SASL_SSL: our client certificate "
                                                                     "(PEM), where the brokers require one (mTLS)")
    kafka_ssl_key_file: Path | None = Field(default=None, description="the client certificate's private key (PEM), "
                                                                    "unless the certificate file holds it")
    kafka_ssl_key_password: SecretStr | None = Field(default=None, description="the private key's password, if it has one")
    kafka_ssl_check_hostname: bool = Field(default=True, description="the broker's certificate must name the host we "
                                                                     "connect to; turn off only for a test cluster")
    kafka_connect_timeout_s: float = Field(default=10.0, gt=0, le=300, description="how long a first connection to "
                                           "Kafka (with its TLS and SASL handshakes) may take before we give up")

    @field_validator("kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_ca_file", "kafka_ssl_cert_file",
                     "kafka_ssl_key_file", "kafka_ssl_key_password", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """`KAFKA_SASL_USERNAME=` (as docker compose passes an unset variable) means unset."""
        return None if value == "" else value

    @model_validator(mode="after")
    def _kafka_security_is_whole(self) -> "Settings":
        """Refuse a half-configured secured broker at start, in Kafka's terms, rather than a login that fails later."""
        sasl = self.kafka_security_protocol.startswith("SASL_")
        tls = self.kafka_security_protocol.endswith("SSL")
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password and self.kafka_sasl_password.get_secret_value()):
            raise ValueError(f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs KAFKA_SASL_USERNAME and "
                             "KAFKA_SASL_PASSWORD")
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL is "
                             f"{self.kafka_security_protocol}: set it to SASL_SSL (or SASL_PLAINTEXT) to log in")
        tls_files = {"KAFKA_SSL_CA_FILE": self.kafka_ssl_ca_file, "KAFKA_SSL_CERT_FILE": self.kafka_ssl_cert_file,
                     "KAFKA_SSL_KEY_FILE": self.kafka_ssl_key_file}
        given = [name for name, value in tls_files.items() if value is not None]
        if given and not tls:
            raise ValueError(f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL is {self.kafka_security_protocol}: "
                             "set it to SSL or SASL_SSL to use TLS")
        if (self.kafka_ssl_key_file or self.kafka_ssl_key_password) and not self.kafka_ssl_cert_file:
            raise ValueError("KAFKA_SSL_KEY_FILE/KAFKA_SSL_KEY_PASSWORD need KAFKA_SSL_CERT_FILE, the certificate they go with")
        return self

    @field_validator("webhook_allowed_destinations")
    @classmethod
    def _destinations_parse(cls, value: str) -> str:
        parse_destinations(value)  # a mistyped entry stops the process rather than silently matching nothing
        return value

    @property
    def signing_key(self) -> str | None:
        """What the API and CLI sign job ids with, and the uploader checks them with."""
        if self.job_signing_secret or self.api_token:
            return self.job_signing_secret or self.api_token
        return "development only" if self.api_dev_mode else None

    def group(self, service: str) -> str:
        return f"{self.group_prefix}.{service}"

    @property
    def request_max_bytes(self) -> int:
        # A request carries the file inline, base64 at worst (4/3), plus its envelope.
        return self.max_bytes * 4 // 3 + 64 * 1024


@lru_cache
def get_settings() -> Settings:
    return Settings()
