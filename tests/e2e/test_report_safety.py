"""The reports a user downloads hold against hostile files: every cell a spreadsheet would run arrives
escaped (header cells too), and the saved name is safe whatever the file was called. Real imports on
the real broker and database, the reports fetched through the HTTP API."""

import csv
import io
import unicodedata
import uuid
from datetime import UTC, datetime
from email.message import Message
from email.utils import collapse_rfc2231_value

import httpx

from shared.events import JobStatus, Mode, Source
from shared.tables import import_jobs

from .conftest import unique_domain
from .test_api import AUTH, poll, upload

HEADER_FORMULAS = ["=1+2", "-2+3", "@SUM(2)", "+4", " =5", "\uff1d6"]
VALUE_FORMULAS = ["\uff1d1+2", "\uff0b4", "\uff0d2+3", "\uff20SUM(2)", "\u3000\uff1d5", "\u200b=6"]


def runs(cell: str) -> bool:
    """What a spreadsheet would run, written out here on its own (not the code under test's decision)."""
    return cell.lstrip(" \u3000\u00a0\u200b\ufeff")[:1] in tuple("=+-@\t\r\n\uff1d\uff0b\uff0d\uff20")


def saved_name(answer: httpx.Response) -> tuple[str, str]:
    """(filename*, filename) of a download as RFC 6266 clients read them; nothing else in the header."""
    assert answer.status_code == 200, answer.text
    message = Message()
    message["Content-Disposition"] = answer.headers["content-disposition"]
    params = message.get_params(header="content-disposition")
    assert [key for key, _ in params] == ["attachment", "filename", "filename"], params
    return collapse_rfc2231_value(params[2][1]), params[1][1]


def rows_of(answer: httpx.Response) -> list[list[str]]:
    text = answer.content.decode("utf-8")
    assert text.startswith("\ufeff")
    return list(csv.reader(io.StringIO(text[1:], newline="")))


def safe(name: str, suffix: str) -> bool:
    return (name.endswith(suffix) and not any(c in name for c in '"\\/\r\n\x00')
            and not any(unicodedata.category(c) in ("Cc", "Cf") for c in name))


async def test_full_width_and_header_cell_formulas_reach_both_reports_escaped(api):
    d = unique_domain()
    header = ",".join(["firstName", "email", "lastName", *(f'"{h}"' for h in HEADER_FORMULAS)])
    lines = [f"{name},v{i}@{d},Lee{',' * len(HEADER_FORMULAS)}" for i, name in enumerate(VALUE_FORMULAS)]
    extra = ",".join(f'"{h}"' for h in HEADER_FORMULAS)  # values of the unknown columns: kept in errors.csv as uploaded
    text = "\n".join([header, *lines, f"Ann,ann@{d},\uff0bLee,{extra}", f"Bob,bob@{d},Lee{',' * len(HEADER_FORMULAS)}"]) + "\n"
    async with httpx.AsyncClient(base_url=api) as http:
        job = await poll(http, (await upload(http, text.encode("utf-8"), name="formulas.csv")).json()["status_url"])
        errors = await http.get(job["links"]["errors_csv"], headers=AUTH)
        results = await http.get(job["links"]["results_csv"], headers=AUTH)

    assert (job["status"], job["created"], job["rejected"]) == ("completed_with_errors", 1, len(VALUE_FORMULAS) + 1)
    report = rows_of(errors)
    # (column names lose surrounding spaces when the file is read: " =5" is the column "=5")
    assert report[0][:3 + len(HEADER_FORMULAS)] == ["firstName", "email", "lastName", *("'" + h.strip() for h in HEADER_FORMULAS)]
    assert [row[0] for row in report[1:-1]] == ["'" + v for v in VALUE_FORMULAS]
    assert report[-1][2:3 + len(HEADER_FORMULAS)] == ["'\uff0bLee", *("'" + h for h in HEADER_FORMULAS)]
    assert all(not runs(cell) for row in report for cell in row)
    outcomes = rows_of(results)
    assert outcomes[0] == ["row", "line", "email", "username", "client_id", "outcome"]
    assert [row[2] for row in outcomes[1:]] == [f"bob@{d}"]
    assert all(not runs(cell) for row in outcomes for cell in row)


async def test_a_hostile_file_name_names_its_reports_safely(api, partner):
    d = unique_domain()
    names = {
        "quote": "x\"; filename*=UTF-8''pwned.html; a=\".csv",
        "cyrillic": "Клиенты 2026.csv",  # (a direction override is refused on the way in: see below)
        "markup": "[/bold]<b>.csv",
    }
    jobs = {}
    for tag, name in names.items():
        note = await partner.run(f"firstName,email\n=1,{tag.replace(' ', '')}@{d}\n", file_name=name)
        jobs[tag] = note.job_id
    async with httpx.AsyncClient(base_url=api) as http:
        got = {tag: {kind: saved_name(await http.get(f"/imports/{job}/{kind}.csv", headers=AUTH))
                     for kind in ("errors", "results")} for tag, job in jobs.items()}

    for tag, kinds in got.items():
        for kind, (name, fallback) in kinds.items():
            assert safe(name, f"-{kind}.csv") and safe(fallback, f"-{kind}.csv"), (tag, name, fallback)
            assert fallback.isascii() and not name.endswith(".html")
    assert got["cyrillic"]["errors"] == ("Клиенты 2026-errors.csv", "2026-errors.csv")
    assert got["markup"]["results"][0] == "bold]_b-results.csv"  # the API names reports after the stem


async def stored_job_named(engine, file_name: str) -> str:
    """A job whose name was stored by an older version, or written to the table by hand."""
    job_id = f"report-name-{uuid.uuid4()}"
    async with engine.begin() as conn:
        await conn.execute(import_jobs.insert().values(
            id=job_id, file_name=file_name, source=Source.API.value,
            requested_by="e2e", mode=Mode.UPSERT.value, status=JobStatus.COMPLETED.value,
            received_at=datetime.now(UTC), warnings=[]))
    return job_id


async def test_a_stored_name_with_cr_lf_is_a_download_not_a_broken_response(api, engine):
    job_id = await stored_job_named(engine, "a\r\nSet-Cookie: pwned=1\r\n\r\nx.csv")
    async with httpx.AsyncClient(base_url=api) as http:
        answer = await http.get(f"/imports/{job_id}/errors.csv", headers=AUTH)

    name, fallback = saved_name(answer)
    assert "set-cookie" not in answer.headers and not answer.cookies
    assert (name, fallback) == ("a Set-Cookie_ pwned=1 x-errors.csv", "a Set-Cookie_ pwned=1 x-errors.csv")


async def test_a_stored_name_with_a_direction_override_loses_it_in_the_download(api, engine):
    job_id = await stored_job_named(engine, "Клиенты \u202eslx.exe.csv")
    async with httpx.AsyncClient(base_url=api) as http:
        name, fallback = saved_name(await http.get(f"/imports/{job_id}/errors.csv", headers=AUTH))
    assert (name, fallback) == ("Клиенты slx.exe-errors.csv", "slx.exe-errors.csv")
