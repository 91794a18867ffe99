"""The preview (services/api/preview.py) against the pipeline's own planning and validation of the same file: for
any file and column map, it refuses what the uploader refuses, and marks rejected exactly the rows the validator
rejects, with the same problems. Never an exception, whatever the bytes."""

import base64

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.api.preview import PREVIEW_ROWS, SAMPLES, preview
from services.uploader.intake import plan_job
from shared.events import Chunk, ImportOptions, ImportRequest, JobAccepted, JobRefused
from shared.fields import TARGETS
from shared.reading import Limits
from shared.rules import RowRules, validate_chunk

CHECKS = settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
LIMITS = Limits(max_records=30)
HEADER = ["Vorname", "Nachname", "Mail", "Typ", "Notiz"]
cells = st.sampled_from(["Ann", "", " ", "=1+1", "a@x.com", "A@X.com", "b@x.com", "not-mail", "corporate", "wholesale",
                         "Lee, Ann Marie", "<b>", "x" * 120, "ü", "a\tb"])
rows = st.lists(st.lists(cells, min_size=0, max_size=6), max_size=PREVIEW_ROWS + 5)
PARTNER = {"Vorname": "firstName", "Mail": "email"}
# Mostly maps that fit (the partner's, changed a little), some that do not
maps = st.one_of(
    st.dictionaries(st.sampled_from(HEADER), st.none() | st.sampled_from(TARGETS), max_size=3).map(lambda m: PARTNER | m),
    st.dictionaries(st.sampled_from([*HEADER, "Elsewhere", "mail"]), st.none() | st.sampled_from(TARGETS), max_size=5),
)


def csv_text(header: list[str], records: list[list[str]]) -> bytes:
    quote = lambda value: '"' + value.replace('"', '""') + '"'  # noqa: E731
    return "".join(",".join(quote(v) for v in line) + "\n" for line in [header, *records]).encode()


def pipeline(data: bytes, column_map: dict) -> tuple[dict | None, dict[int, tuple[str, ...]], int | None]:
    """What the uploader and the validator make of the file: the refusal, each row's problem codes, the total."""
    request = ImportRequest(file_name="p.csv", content_base64=base64.b64encode(data).decode(),
                            options=ImportOptions(column_map=column_map or None))
    published = [p.event for p in plan_job(request, "job", LIMITS, chunk_rows=7)]
    if isinstance(published[0], JobRefused):
        return {"code": published[0].reason.code, "message": published[0].reason.message}, {}, None
    assert isinstance(published[0], JobAccepted)
    outcome: dict[int, tuple[str, ...]] = {}
    for chunk in (e for e in published if isinstance(e, Chunk)):
        accepted, rejected = validate_chunk(chunk, RowRules())
        outcome |= {r.row: () for r in accepted} | {r.row: tuple(e.code for e in r.errors) for r in rejected}
    return None, outcome, published[0].total


@CHECKS
@given(records=rows, column_map=maps)
def test_the_preview_says_what_the_pipeline_does_with_the_same_file(records, column_map):
    data = csv_text(HEADER, records)

    shown = preview(data, LIMITS, RowRules(), column_map)
    refused, outcome, total = pipeline(data, column_map)

    assert (shown["refused"] or {}).get("code") == (refused or {}).get("code")
    if refused:
        assert shown["refused"]["message"] == refused["message"] and shown["rows"] == []
        return
    assert shown["total"] == total
    event("read")
    assert {r["row"]: tuple(e["code"] for e in r["errors"]) for r in shown["rows"]} == {
        row: codes for row, codes in outcome.items() if row <= PREVIEW_ROWS}
    assert all(r["accepted"] == (not r["errors"]) for r in shown["rows"])


@CHECKS
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode), column_map=maps)
def test_any_bytes_give_a_preview(data, column_map):
    shown = preview(data, LIMITS, RowRules(), column_map)

    assert len(shown["rows"]) <= PREVIEW_ROWS and all(len(c["samples"]) <= SAMPLES for c in shown["columns"])
    assert shown["refused"] is not None or shown["total"] is not None
    assert shown["needs_mapping"] is (bool(shown["columns"]) and shown["refused"] is not None
                                      and shown["refused"]["code"] in {"missing_columns", "duplicate_column",
                                                                       "invalid_column_map", "unknown_mapping"})


def test_one_preview_holds_about_its_file_once_more_in_memory_not_every_value_of_it():
    """A wide file's every value as a string is ~16 times its size: the preview keeps the values of the rows it
    shows only (measured: 10 MiB, 500 columns: 154 MiB before, 11 MiB now)."""
    import tracemalloc

    header = ",".join(["firstName", "email", *(f"c{i}" for i in range(198))])
    data = bytearray("\n".join([header, *(",".join([f"A{r}", f"a{r}@x.io", *["abc"] * 198]) for r in range(1500))])
                     .encode())
    tracemalloc.start()
    try:
        answer = preview(data, Limits(), RowRules())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert answer["total"] == 1500 and answer["refused"] is None
    assert peak < 3 * len(data), f"{peak / len(data):.1f} times the file"


def test_values_shown_have_no_control_or_direction_characters():
    """A right-to-left override in a value would reverse what the page shows around it: it is shown as U+FFFD,
    as in messages."""
    spoof = "Ann\u202egnp.exe\u2066x\u0007"
    data = csv_text(["firstName", "email", "Notiz"], [[spoof, "bad\u202email", spoof]])
    answer = preview(data, Limits(), RowRules())

    shown = [*answer["columns"][0]["samples"], *answer["columns"][2]["samples"],
             *(v for r in answer["rows"] for v in r["values"].values() if v)]
    assert spoof in data.decode() and shown
    assert not any(c in value for value in shown for c in "\u202e\u2066\u0007")
    assert answer["rows"][0]["values"]["email"] == "bad\ufffdmail"
