"""Configuration, read from the environment (or a .env file) once per process."""

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .fields import CLIENT_TYPES


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

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

    webhook_secret: str | None = Field(default=None, description="signs callback POSTs (HMAC-SHA256)")
    webhook_attempts: int = Field(default=5, ge=1)
    webhook_backoff_s: float = Field(default=0.5, ge=0, description="first retry delay; doubles each time")
    webhook_timeout_s: float = Field(default=10.0, gt=0)

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
    # The API's front door (services/api/limits.py): what one request may take of the server, in time and bytes.
    api_head_timeout_s: float = Field(default=10.0, gt=0, description="time to receive a request's line and headers")
    api_body_timeout_s: float = Field(default=120.0, gt=0, description="time to receive a request's whole body")
    api_body_stall_s: float = Field(default=10.0, gt=0, description="longest silence between two pieces of a body")
    api_max_head_bytes: int = Field(default=16 * 1024, ge=1024, description="bytes of a request's line and headers")
    api_max_body_bytes: int = Field(default=64 * 1024, ge=1024,
                                    description="bytes of a request body, uploads aside (they have max_bytes)")

    log_level: str = "INFO"

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
