"""Running `clients-import` as an operator does: a process of its own (never blocking the loop the
pipelines run on), with the environment an operator would set for the given settings."""

import asyncio
import os
import sys
import time
from pathlib import Path

from shared.settings import Settings

CLI = [sys.executable, "-m", "clients_import.cli"]
ROOT = Path(__file__).parents[2]


def operator_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Our environment without any KAFKA_* of ours, and the settings' broker, login, database and names."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    secrets = {"KAFKA_SASL_PASSWORD": settings.kafka_sasl_password, "KAFKA_SSL_KEY_PASSWORD": settings.kafka_ssl_key_password}
    given = {
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "KAFKA_SECURITY_PROTOCOL": settings.kafka_security_protocol,
        "KAFKA_SASL_MECHANISM": settings.kafka_sasl_mechanism,
        "KAFKA_SASL_USERNAME": settings.kafka_sasl_username,
        "KAFKA_SSL_CA_FILE": settings.kafka_ssl_ca_file,
        "KAFKA_SSL_CERT_FILE": settings.kafka_ssl_cert_file,
        "KAFKA_SSL_KEY_FILE": settings.kafka_ssl_key_file,
        **{name: secret.get_secret_value() for name, secret in secrets.items() if secret is not None},
        "DATABASE_URL": settings.database_url,
        "GROUP_PREFIX": settings.group_prefix,
        "JOB_SIGNING_SECRET": settings.job_signing_secret,
        "JOB_DEADLINE_S": str(settings.job_deadline_s),
        "LOG_LEVEL": "WARNING",
        "COLUMNS": "200",
    }
    return env | {k: str(v) for k, v in given.items() if v is not None} | extra


async def run_cli(env: dict[str, str], *args: str, timeout: float = 90) -> tuple[int, str, str, float]:
    """Exit code, standard output, standard error, and the seconds it took (killed after `timeout`)."""
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(*CLI, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    return process.returncode, out.decode(), err.decode(), time.monotonic() - started
