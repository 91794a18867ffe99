"""A throwaway PostgreSQL cluster from Debian's packages, on a free loopback port, for one test session."""

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from clients_import.local_kafka import free_port


class LocalPostgres:
    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql); `make test` installs it")
        self.bin = Path(found[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix="clients-import-pg-"))
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    def _as_owner(self, *command: str) -> list[str]:
        # PostgreSQL refuses to run as root: run it as the postgres user then.
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else list(command)

    def start(self) -> str:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        data = self.dir / "data"
        subprocess.run(self._as_owner(str(self.bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "crm", "--no-sync"),
                       check=True, capture_output=True)
        self.process = subprocess.Popen(
            self._as_owner(str(self.bin / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(self.dir),
                           "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        for _ in range(300):
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)], capture_output=True)
            if ready.returncode == 0:
                return f"postgresql+asyncpg://crm@127.0.0.1:{self.port}/postgres"
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL did not start: {self.process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("PostgreSQL did not answer within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        shutil.rmtree(self.dir, ignore_errors=True)
