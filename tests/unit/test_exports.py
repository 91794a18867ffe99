"""The exports our users bring are read with no editing: each tool's header is recognised (tests/files/exports/,
built from each tool's documented export format), and each row is a client."""

from pathlib import Path

import pytest

from shared.events import AcceptedRow
from shared.reading import ReadFile, read_file
from shared.rules import check_row

EXPORTS = Path(__file__).parents[1] / "files" / "exports"

# file -> (field -> the column it is read from, the first row's names and email, rows)
EXPECTED = {
    "outlook.csv": ({"firstName": "First Name", "middleName": "Middle Name", "lastName": "Last Name",
                     "email": "E-mail Address"}, ("Renée", None, "Dubois", "renee.dubois@outlook.example.com"), 2),
    "google_outlook.csv": ({"firstName": "First Name", "middleName": "Middle Name", "lastName": "Last Name",
                            "email": "E-mail Address"}, ("Aiko", None, "Tanaka", "aiko@google-outlook.example.com"), 2),
    "google.csv": ({"firstName": "Given Name", "middleName": "Additional Name", "lastName": "Family Name",
                    "email": "E-mail 1 - Value"}, ("Maria", "José", "Silva", "maria@google.example.com"), 2),
    "google_2023.csv": ({"firstName": "First Name", "middleName": "Middle Name", "lastName": "Last Name",
                         "email": "E-mail 1 - Value"}, ("Sofia", None, "Rossi", "sofia@google-new.example.com"), 1),
    "mailchimp.csv": ({"firstName": "First Name", "lastName": "Last Name", "email": "Email Address"},
                      ("Kofi", None, "Mensah", "kofi@mailchimp.example.com"), 2),
    "hubspot.csv": ({"firstName": "First Name", "lastName": "Last Name", "email": "Email"},
                    ("Priya", None, "Natarajan", "priya@hubspot.example.com"), 2),
    "salesforce.csv": ({"firstName": "First Name", "lastName": "Last Name", "email": "Email"},
                       ("Lena", None, "Fischer", "lena@salesforce.example.com"), 2),
    "numbers.csv": ({"firstName": "First name", "lastName": "Last name", "email": "Email"},
                    ("Åsa", None, "Lindqvist", "asa@numbers.example.com"), 2),
    "libreoffice.csv": ({"firstName": "firstName", "lastName": "lastName", "email": "email", "project": "project"},
                        ("Jürgen", None, "Groß", "juergen@libreoffice.example.com"), 2),
}


def read(name: str) -> ReadFile:
    result = read_file((EXPORTS / name).read_bytes())
    assert isinstance(result, ReadFile), result
    return result


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_export_is_read_with_its_columns_recognised(name: str):
    fields, (first, middle, last, email), rows = EXPECTED[name]
    result = read(name)

    assert {field: result.header[index] for field, index in result.columns.items()} == fields
    assert len(result.records) == rows
    row = check_row(result.records[0], list(result.header), result.columns, row=1, line=result.lines[0])
    assert isinstance(row, AcceptedRow), row
    assert (row.values.first_name, row.values.middle_name, row.values.last_name, row.values.email) == (
        first, middle, last, email)


def test_every_export_in_the_folder_is_covered():
    assert {p.name for p in EXPORTS.glob("*.csv")} == set(EXPECTED)


def test_the_salesforce_report_footer_is_not_read_as_clients():
    result = read("salesforce.csv")

    assert [cells[1] for cells in result.records] == ["Lena", "Omar"]
    footer = next(w for w in result.warnings if w.code == "report_footer")
    assert "line 5" in footer.message and "4 lines" in footer.message


def test_the_outlook_export_in_windows_1252_keeps_its_accents():
    result = read("outlook.csv")

    assert result.records[0][result.columns["firstName"]] == "Renée"
    assert "decoded_as_windows_1252" in [w.code for w in result.warnings]


def test_the_libreoffice_export_takes_the_delimiter_its_sep_line_names():
    result = read("libreoffice.csv")

    assert result.delimiter == ";" and result.header[0] == "firstName"
    assert result.lines == [3, 4]  # the sep= line still counts as line 1
