"""The two reports: every cell a spreadsheet would run is escaped (header cells too), and the name a
client saves a report under is safe whatever the uploaded file was called."""

import csv
import io
import unicodedata
from email.message import Message
from email.utils import collapse_rfc2231_value

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.api.reports import NAME_MAX, content_disposition, download_name, errors_csv, results_csv
from shared.formulas import escape_formula, formula_sign

FORMULAS = ["=1+2", "-2+3", "@SUM(2)", "+4", " =5", "\t=6", "\r=7", "\n=8", "\uff1d1+2", "\uff0b4", "\uff0d2+3",
            "\uff20SUM(2)", "\u3000\uff1d1", "\u200b=1", "\ufeff@x", "\u00a0+1", "\u202e=1", "\ufe66x"]


def cells(report: str) -> list[list[str]]:
    assert report.startswith("\ufeff")
    return list(csv.reader(io.StringIO(report[1:], newline="")))


def rejected_row(original: dict[str, str], row: int = 1) -> dict:
    return {"row": row, "line": row + 1, "original": original,
            "errors": [{"field": "lastName", "message": "bad", "code": "formula_injection"}]}


# --- formulas ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("formula", FORMULAS)
def test_every_value_cell_of_errors_csv_that_a_spreadsheet_would_run_is_escaped(formula: str):
    report = cells(errors_csv([rejected_row({"firstName": "Ann", "lastName": formula})]))

    assert report[1][:2] == ["Ann", "'" + formula]


@pytest.mark.parametrize("formula", FORMULAS)
def test_every_header_cell_of_errors_csv_is_escaped_as_well(formula: str):
    report = cells(errors_csv([rejected_row({"firstName": "Ann", formula: "x"})]))

    assert report[0] == ["firstName", "'" + formula, "row", "line", "errors"]


@pytest.mark.parametrize("formula", FORMULAS)
def test_every_cell_of_results_csv_is_escaped(formula: str):
    row = {"row": 1, "line": 2, "email": formula, "username": formula, "client_id": "c1", "outcome": "created"}

    report = cells(results_csv([row]))

    assert report[0] == ["row", "line", "email", "username", "client_id", "outcome"]
    assert report[1] == ["1", "2", "'" + formula, "'" + formula, "c1", "created"]


@given(st.lists(st.text(max_size=12), min_size=1, max_size=4, unique=True), st.text(max_size=12))
def test_no_cell_of_either_report_starts_a_formula(header: list[str], value: str):
    original = dict.fromkeys(header, value)
    rows = [{"row": 1, "line": 2, "email": value, "username": value, "client_id": value, "outcome": value}]
    for report in (errors_csv([rejected_row(original)]), results_csv(rows)):
        for line in cells(report):
            assert all(formula_sign(cell) is None for cell in line), line


@given(st.text(max_size=20))
def test_escaping_keeps_the_text_and_a_value_that_starts_no_formula_is_left_alone(text: str):
    escaped = escape_formula(text)

    assert escaped.removeprefix("'") == text if formula_sign(text) else escaped == text
    assert formula_sign(escaped) is None


# --- download names ---------------------------------------------------------------------------------------

HOSTILE_NAMES = {
    "a quote": 'x"; filename*=UTF-8\'\'pwned.html; a=".csv',
    "CR LF": "x\r\nSet-Cookie: a=b.csv",
    "NUL": "x\x00y.csv",
    "Cyrillic": "Клиенты.csv",
    "right-to-left override": "report\u202eslx.exe.csv",
    "path": "../../etc/passwd.csv",
    "backslashes": "C:\\Users\\ann\\clients.csv",
    "markup": "[/bold]<script>.csv",
    "only dots": "...csv",
    "long": "é" * 1000 + ".csv",
}


def parsed(header: str) -> tuple[str, str, str]:
    """(type, filename, filename*) as a mail client's RFC 2231 decoder reads them; nothing else present."""
    message = Message()
    message["Content-Disposition"] = header
    params = message.get_params(header="content-disposition")
    assert [key for key, _ in params] == ["attachment", "filename", "filename"], params
    (kind, _), (_, fallback), (_, extended) = params
    assert isinstance(fallback, str) and isinstance(extended, tuple), "filename= then filename*=UTF-8''..."
    assert extended[0].lower() == "utf-8"
    return kind, fallback, collapse_rfc2231_value(extended)


def assert_safe(name: str, suffix: str) -> None:
    assert name.endswith(suffix) and len(name) > len(suffix)
    assert not any(char in name for char in '"\\/\r\n\x00')
    assert not any(unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp", "Cs") for char in name), ascii(name)
    assert not name.startswith((".", " ")) and name == name.strip()


@pytest.mark.parametrize("upload", HOSTILE_NAMES.values(), ids=HOSTILE_NAMES.keys())
def test_a_hostile_upload_name_gives_a_report_name_that_parses_back_safe(upload: str):
    stored = upload.removesuffix(".csv") + "-errors.csv"  # the API names a report after the upload
    header = content_disposition(stored, "-errors.csv")

    kind, fallback, name = parsed(header)

    header.encode("ascii")  # what any HTTP server can send
    assert kind == "attachment"
    assert_safe(name, "-errors.csv")
    assert_safe(fallback, "-errors.csv")
    assert fallback.isascii() and len(name) <= NAME_MAX + len("-errors.csv")
    assert name == download_name(stored, "-errors.csv")


def test_a_plain_name_is_kept_and_a_non_latin_one_keeps_its_letters():
    assert parsed(content_disposition("clients-errors.csv", "-errors.csv"))[1:] == ("clients-errors.csv",) * 2
    _, fallback, name = parsed(content_disposition("Клиенты Ünïcode-results.csv", "-results.csv"))
    assert (name, fallback) == ("Клиенты Ünïcode-results.csv", "Unicode-results.csv")


def test_the_injection_that_named_the_download_pwned_html_is_now_one_harmless_name():
    _, fallback, name = parsed(content_disposition('x"; filename*=UTF-8\'\'pwned.html; a="-errors.csv', "-errors.csv"))

    assert name == "x_; filename_=UTF-8''pwned.html; a=-errors.csv"
    assert fallback == "x_ filename_=UTF-8''pwned.html_ a=-errors.csv"


def test_a_name_with_nothing_visible_falls_back_to_import():
    assert download_name("\u202e\u200b. -errors.csv", "-errors.csv") == "import-errors.csv"
    assert parsed(content_disposition("Клиенты-errors.csv", "-errors.csv"))[1] == "import-errors.csv"


@given(st.text(max_size=300), st.sampled_from(["-errors.csv", "-results.csv", ".csv"]))
def test_any_name_gives_an_ascii_header_that_parses_back_to_a_safe_name_with_the_report_suffix(upload: str, suffix: str):
    header = content_disposition(upload, suffix)

    header.encode("ascii")
    kind, fallback, name = parsed(header)
    assert kind == "attachment"
    assert_safe(name, suffix)
    assert_safe(fallback, suffix)
    assert len(name) <= NAME_MAX + len(suffix) and len(name.encode()) <= 255  # what a file system takes


def test_a_value_holding_a_formula_after_a_semicolon_stays_one_cell_for_a_spreadsheet_splitting_on_semicolons():
    text = errors_csv([{"original": {"firstName": "Ann;=1+1;", "email": "x"}, "row": 1, "line": 2,
                        "errors": [{"field": "email", "message": "bad", "code": "invalid_email"}]}])
    for line in text.removeprefix("\ufeff").splitlines():
        cells = next(csv.reader([line], delimiter=";"))
        assert not any(formula_sign(cell) for cell in cells), (line, cells)
