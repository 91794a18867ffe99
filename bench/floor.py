"""The floor: the same import as the pipeline, written as the shortest honest one-process program.

What the pipeline does to a file, with the rules that cost something, and nothing else: read it with
the `csv` module; trim and NFC each value; refuse a value a spreadsheet would run (shared/formulas.py's
rule); check the email (plain ASCII addresses by a dot-atom pattern and their domain once per domain,
everything else by email-validator, as the product does); keep the first row of each email of the file;
make a username from the email for a new client; and, in one SQLite transaction per file on the
product's own tables and indexes, read the clients the file names, upsert them by email with
`executemany ... ON CONFLICT`, and write one outcome row per input row. No search index: keeping
one is extra work the pipeline does and the floor does not (see `make bench`).

`python bench/floor.py` runs it alone; `make bench` runs it in the same run as the pipeline.
"""

import csv
import io
import os
import re
import sqlite3
import sys
import time
import unicodedata
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from email_validator import EmailNotValidError, validate_email  # noqa: E402
from sqlalchemy import create_engine  # noqa: E402

from shared.formulas import formula_sign  # noqa: E402
from shared.tables import metadata  # noqa: E402

_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_NOT_SLUG = re.compile(r"[^a-z0-9._-]")


@lru_cache(maxsize=4096)
def _domain_ok(domain: str) -> bool:
    try:
        validate_email(f"postmaster@{domain}", check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def email_of(value: str) -> str | None:
    local, at, domain = value.rpartition("@")
    if at and value.isascii() and "xn--" not in domain.lower() and len(local) <= 64 and _LOCAL.fullmatch(local):
        return value.lower() if _domain_ok(domain.lower()) else None
    try:
        return validate_email(value, check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def rows_of(data: bytes):
    """(row number, email or None when refused, values) for each row of the file."""
    reader = csv.reader(io.StringIO(data.decode("utf-8"), newline=""))
    header = next(reader)
    at = {name: i for i, name in enumerate(header)}
    for number, cells in enumerate(reader, start=1):
        values = [unicodedata.normalize("NFC", c.strip()) for c in cells]
        ok = not any(formula_sign(v) for v in values if v)
        email = email_of(values[at["email"]]) if ok and values[at["email"]] else None
        first = values[at["firstName"]] if ok else ""
        yield number, (email if first else None), values, at


def import_file(db: sqlite3.Connection, data: bytes, job_id: str) -> int:
    now = datetime.now(UTC).isoformat()
    rows, seen = [], set()
    for number, email, values, at in rows_of(data):
        if email in seen:
            email = None  # a repeat of an earlier row of the file: refused
        if email:
            seen.add(email)
        rows.append((number, email, values, at))
    db.execute("BEGIN IMMEDIATE")
    emails = sorted(seen)
    existing, taken = {}, set()
    for start in range(0, len(emails), 500):
        part = emails[start : start + 500]
        marks = ",".join("?" * len(part))
        query = f"SELECT email, id, username FROM clients WHERE email IN ({marks})"
        existing.update({e: (i, u) for e, i, u in db.execute(query, part)})
    upserts, outcomes = [], []
    for number, email, values, at in rows:
        if email is None:
            outcomes.append((job_id, number, number + 1, values[at["email"]] if len(values) > at["email"] else "",
                             "rejected", None, None))
            continue
        if email in existing:
            client_id, username = existing[email]
            outcome = "updated"
        else:
            client_id, outcome = str(uuid.uuid4()), "created"
            username = free_username(db, _NOT_SLUG.sub("", email.split("@")[0]) or "client", taken)
        upserts.append((client_id, email, username, values[at["firstName"]], values[at["lastName"]] or None,
                        values[at["project"]] or "default", values[at["desk"]] or "default",
                        values[at["type"]].lower() or "personal", now, now))
        outcomes.append((job_id, number, number + 1, email, outcome, client_id, username))
    db.executemany(
        "INSERT INTO clients (id, email, username, first_name, last_name, project, desk, type, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (email) DO UPDATE SET username = excluded.username, "
        "first_name = excluded.first_name, last_name = excluded.last_name, project = excluded.project, "
        "desk = excluded.desk, type = excluded.type, updated_at = excluded.updated_at", upserts)
    db.executemany("INSERT INTO row_outcomes (job_id, row, line, email, outcome, client_id, username) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?)", outcomes)
    db.execute("COMMIT")
    return len(rows)


def free_username(db: sqlite3.Connection, base: str, taken: set[str]) -> str:
    name, suffix = base, 0
    while name in taken or db.execute("SELECT 1 FROM clients WHERE username = ?", (name,)).fetchone():
        suffix += 1
        name = f"{base}{suffix}"
    taken.add(name)
    return name


def connect(path: Path) -> sqlite3.Connection:
    """The product's tables and indexes (shared/tables.py), with the product's pragmas."""
    engine = create_engine(f"sqlite:///{path}")
    metadata.create_all(engine)
    engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def floor_rate(files: list[bytes], path: Path) -> float:
    """Rows per second of importing `files` one after the other into a new database at `path`."""
    db = connect(path)
    started = time.perf_counter()
    rows = sum(import_file(db, data, uuid.uuid4().hex) for data in files)
    elapsed = time.perf_counter() - started
    db.close()
    return rows / elapsed


if __name__ == "__main__":
    import tempfile

    from bench import csv_file  # noqa: E402 (bench/bench.py, run from the repository)

    files = [csv_file(5000, uuid.uuid4().hex[:8]) for _ in range(20)]
    with tempfile.TemporaryDirectory() as tmp:
        print(f"floor: {floor_rate(files, Path(tmp) / 'floor.db'):,.0f} rows/s ({os.cpu_count()} cores)")
