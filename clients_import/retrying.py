"""`clients-import retry JOB FILE`: the request that retries an import's rejected rows (rules: shared/retries.py).

FILE is a CSV with a `row` column (the edited errors.csv), or JSON {"rows": [{"row": 7, "values": {...}}]}, which
is made the retry's CSV from the original's rows as the API does."""

import base64
import uuid
from pathlib import Path

from shared import jobs, retries
from shared.db import create_engine, reading
from shared.events import ImportOptions, ImportRequest, Issue, Source
from shared.reading import Limits
from shared.settings import Settings


class RetryRefused(Exception):
    """The retry cannot start: the sentence says why."""


async def retry_request(settings: Settings, job_id: str, path: Path) -> ImportRequest:
    engine = create_engine(settings.database_url)
    try:
        async with reading(engine).connect() as conn:
            original = await retries.load_original(conn, job_id)
    finally:
        await engine.dispose()
    refused = retries.refusal(original, "cli", trusted=True)
    if refused is not None:
        raise RetryRefused(f"{refused.message} [{refused.code}]")
    data, name = path.read_bytes(), path.name
    if path.suffix.lower() == ".json":
        data, name = _rows_file(original, data, settings), f"{Path(original.file_name).stem[:200] or 'import'}-fixes.csv"
    retry_id = str(uuid.uuid4())
    return ImportRequest(job_id=retry_id, job_signature=jobs.sign(settings.signing_key, retry_id), requested_by="cli",
                         source=Source.CLI, file_name=name, content_base64=base64.b64encode(data).decode(),
                         options=ImportOptions(mode=original.mode), retry_of=original.job_id)


def _rows_file(original: retries.Original, data: bytes, settings: Settings) -> bytes:
    """The JSON rows file made the retry's CSV, by the API's rules (shared/retries.py json_rows)."""
    taken = retries.json_rows(data, original, Limits.of(settings))
    if isinstance(taken, Issue):
        raise RetryRefused(f"The JSON file cannot be taken: {taken.message} [{taken.code}]")
    rows, rest = taken
    refused = retries.options_refusal(original, rest.get("dry_run") not in (None, False),
                                      None if rest.get("mode") is None else str(rest["mode"]),
                                      rest.get("column_map") is not None or rest.get("mapping") is not None)
    if refused is not None:
        raise RetryRefused(f"{refused.message} [{refused.code}]")
    return retries.rows_csv(original, rows, settings.max_columns - len(original.header) - 1).encode()
