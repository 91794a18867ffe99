"""From a retry request (an ImportRequest with `retry_of`) to what the uploader publishes: the retry's job,
then chunks of its rows in the original's columns, under the original's row numbers (rules: shared/retries.py)."""

from shared import retries, topics
from shared.events import AppliedMapping, ImportRequest, Issue, JobAccepted, JobRefused
from shared.kafka import Publication
from shared.reading import Limits, ReadFile, match_header, read_file

from .chunking import cut


def plan_retry(
    request: ImportRequest, job_id: str, basis: retries.Basis, limits: Limits, chunk_rows: int,
    chunk_max_bytes: int = 1024 * 1024,
) -> list[Publication]:
    original = basis.original
    common = dict(job_id=job_id, file_name=request.file_name, source=request.source,
                  requested_by=request.requested_by, idempotency_key=request.idempotency_key,
                  retry_of=original.job_id if original else request.retry_of)
    if basis.refusal is not None or original is None:
        return [_refused(common, basis.refusal or retries.refusal(None, "", True))]
    given = request.options
    refused = retries.options_refusal(original, given.dry_run,
                                      given.mode.value if "mode" in given.model_fields_set else None,
                                      given.column_map is not None or given.mapping is not None)
    if refused is not None:
        return [_refused(common, refused)]
    options = retries.options_of(original, request.options.callback_url)
    mapping = AppliedMapping(**original.mapping) if original.mapping else None
    common |= {"options": options, "mapping": mapping}
    try:
        data = request.file_bytes()
    except ValueError as error:
        return [_refused(common, Issue(code="invalid_request", message=str(error)))]
    table = read_file(data, limits, fields=False)
    if isinstance(table, Issue):
        return [_refused(common, table)]
    numbers = retries.row_numbers(table.header, table.records, original.total)
    if isinstance(numbers, Issue):
        return [_refused(common, numbers)]
    read = _in_original_columns(original, table, numbers)
    if isinstance(read, Issue):
        return [_refused(common, read)]
    answered = retries.answers(original, numbers, basis.retryable)
    chunks = cut(job_id, read, chunk_rows, options, max_bytes=chunk_max_bytes, numbers=numbers, refused=answered)
    accepted = JobAccepted(**common, total=len(numbers), chunks=len(chunks), warnings=tuple(read.warnings))
    return [
        Publication(topics.JOBS, accepted, key=job_id),
        *(Publication(topics.CHUNKS, chunk, key=job_id) for chunk in chunks),
    ]


def _in_original_columns(original: retries.Original, table: ReadFile, numbers: list[int]) -> ReadFile | Issue:
    """The retry's rows as the original file would hold them, with its fields found as the original found them."""
    header = original.header
    matched = match_header(header, (original.mapping or {}).get("columns") or None)
    if isinstance(matched, Issue):  # cannot happen for a header the original was read with; said plainly if it does
        return matched
    columns, _ = matched
    records = [retries.merged(original, number, table.header, cells) for number, cells in zip(numbers, table.records,
                                                                                             strict=True)]
    lines = [original.rejected[n].line if n in original.rejected else line for n, line in zip(numbers, table.lines,
                                                                                              strict=True)]
    warnings = list(table.warnings)
    unknown = retries.unknown_columns(original, table.header)
    if unknown:
        shown = ", ".join(f"“{name[:60]}”" for name in unknown[:10])
        warnings.append(Issue(code="unknown_columns", message=(
            f"These columns are not columns of {original.file_name} nor fields, so they were ignored: {shown}.")))
    return ReadFile(header=tuple(header), columns=columns, records=records, lines=lines, delimiter=",",
                    warnings=warnings)


def _refused(common: dict, reason: Issue) -> Publication:
    return Publication(topics.JOBS, JobRefused(**common, reason=reason), key=common["job_id"])
