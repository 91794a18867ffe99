"""The row rules of the validator: what makes a row acceptable, and its normalised values."""

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from shared.events import AcceptedRow, Chunk, ClientValues, RejectedRow
from shared.rules import _PLAIN_TEXT, RowRules, _unsafe, check_row, check_safe, validate_chunk

HEADER = ["firstName", "middleName", "lastName", "email", "username", "project", "desk", "type"]
COLUMNS = {name: i for i, name in enumerate(HEADER)}


def row(**values: str) -> list[str]:
    """A row of HEADER with a valid first name and email unless given."""
    values = {"firstName": "Ann", "email": "ann@x.com", **values}
    return [values.get(name, "") for name in HEADER]


def check(cells: list[str], header: list[str] = HEADER, repeat=None, rules: RowRules = RowRules()):
    columns = {name: i for i, name in enumerate(header) if name in COLUMNS}
    return check_row(cells, header, columns, row=4, line=6, repeat=repeat, rules=rules)


def accepted(cells: list[str], **kwargs) -> ClientValues:
    result = check(cells, **kwargs)
    assert isinstance(result, AcceptedRow), result
    return result.values


def rejected(cells: list[str], **kwargs) -> RejectedRow:
    result = check(cells, **kwargs)
    assert isinstance(result, RejectedRow), result
    return result


def codes(cells: list[str], **kwargs) -> list[str]:
    return sorted(issue.code for issue in rejected(cells, **kwargs).errors)


# --- normalising ---------------------------------------------------------------------------------------


def test_every_value_is_trimmed_and_nfc_normalised():
    values = accepted(row(firstName="  Zoe\u0308 ", lastName=" Lee ", email=" ann@x.com ", project=" Alpha ",
                          desk=" D1 ", username=" ann_1 ", type=" personal "))

    assert values == ClientValues(
        email="ann@x.com", first_name="Zoë", last_name="Lee", username="ann_1", project="Alpha", desk="D1",
        type="personal",
    )
    assert len(values.first_name) == 3


def test_empty_and_absent_optional_values_are_none():
    values = accepted(["Ann", "ann@x.com"], header=["firstName", "email"])
    assert values == ClientValues(email="ann@x.com", first_name="Ann")

    values = accepted(row(middleName="   ", project=""))
    assert (values.middle_name, values.project, values.username, values.type) == (None, None, None, None)


def test_missing_trailing_fields_count_as_empty():
    values = accepted(["Ann", "", "", "ann@x.com"])
    assert values.email == "ann@x.com" and values.username is None


# --- names ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first_name", ["", "   "])
def test_first_name_is_required(first_name: str):
    issue, = rejected(row(firstName=first_name)).errors
    assert (issue.code, issue.field) == ("missing_first_name", "firstName")
    assert "first name" in issue.message


@pytest.mark.parametrize("column, words", [("firstName", "first name"), ("middleName", "middle name"),
                                           ("lastName", "last name")])
def test_names_are_at_most_100_characters(column: str, words: str):
    assert accepted(row(**{column: "é" * 100}))

    issue, = rejected(row(**{column: "é" * 101})).errors

    assert (issue.code, issue.field) == ("name_too_long", column)
    assert words in issue.message and "101" in issue.message and "100" in issue.message


def test_length_is_counted_after_normalising():
    assert accepted(row(firstName="e\u0301" * 100)).first_name == "é" * 100


@pytest.mark.parametrize(
    "name", ["José", "Zoë", "Ørjan", "Łukasz", "Αλέξης", "Дмитрий", "محمد", "李小龍", "佐藤 美咲", "O’Neil", "Jean-Luc",
             "d'Artagnan", "Mary Ann"],
)
def test_accented_and_non_latin_names_are_accepted_as_written(name: str):
    values = accepted(row(firstName=name, lastName=name))
    assert values.first_name == name and values.last_name == name


# --- email ------------------------------------------------------------------------------------------------


def test_email_is_required():
    issue, = rejected(row(email="  ")).errors
    assert (issue.code, issue.field) == ("missing_email", "email")


@pytest.mark.parametrize("email", ["Ann.Lee@Example.COM", "ANN.LEE@EXAMPLE.COM", " ann.lee@example.com "])
def test_email_is_stored_lower_case(email: str):
    assert accepted(row(email=email)).email == "ann.lee@example.com"


@pytest.mark.parametrize(
    "email", ["ann+crm@x.com", "ann.lee@sub.example.co.uk", "o'neil@x.com", "jörg@bücher.de", "a_b-c@x-y.io"],
)
def test_valid_addresses_are_accepted_without_any_dns_lookup(email: str):
    assert accepted(row(email=email)).email == email.lower()


@pytest.mark.parametrize(
    "email", ["ann", "ann@", "ann@x", "ann@@x.com", "ann x@x.com", "ann..lee@x.com", "ann@-x.com", "ann@x..com",
              "ann@localhost", '"ann"@x.com'],
)
def test_invalid_addresses_are_rejected_quoting_the_value(email: str):
    issue, = rejected(row(email=email)).errors

    assert (issue.code, issue.field) == ("invalid_email", "email")
    assert email in issue.message


def address(length: int) -> str:
    domain = ".".join(["b" * 63, "c" * 63, "d" * (length - 64 - 1 - 63 - 1 - 63 - 1 - 4)]) + ".com"
    return "a" * 64 + "@" + domain


def test_email_is_at_most_254_characters():
    assert len(address(254)) == 254
    assert accepted(row(email=address(254))).email == address(254)

    issue, = rejected(row(email=address(255))).errors

    assert (issue.code, issue.field) == ("email_too_long", "email")
    assert "255" in issue.message and "254" in issue.message


# --- username, project, desk, type ---------------------------------------------------------------------


@pytest.mark.parametrize("username, stored", [("abc", "abc"), ("Ann.Lee", "ann.lee"), ("ann_lee-2", "ann_lee-2"),
                                              ("A" * 64, "a" * 64), ("007", "007")])
def test_a_username_of_3_to_64_letters_digits_dots_underscores_hyphens_is_stored_lower_case(username, stored):
    assert accepted(row(username=username)).username == stored


@pytest.mark.parametrize("username", ["ab", "a" * 65, "ann lee", "ann@x", "ann!", "zoë", "ann/lee"])
def test_other_usernames_are_rejected_quoting_the_value(username: str):
    issue, = rejected(row(username=username)).errors

    assert (issue.code, issue.field) == ("invalid_username", "username")
    assert username[:20] in issue.message and "3 to 64" in issue.message


@pytest.mark.parametrize("column", ["project", "desk"])
def test_project_and_desk_are_optional_and_at_most_100_characters(column: str):
    assert getattr(accepted(row(**{column: "P" * 100})), column) == "P" * 100

    issue, = rejected(row(**{column: "P" * 101})).errors

    assert (issue.code, issue.field) == ("value_too_long", column)
    assert column in issue.message and "101" in issue.message


@pytest.mark.parametrize("value, stored", [("personal", "personal"), ("Corporate", "corporate"), ("PERSONAL", "personal")])
def test_type_is_one_of_the_default_set_stored_lower_case(value: str, stored: str):
    assert accepted(row(type=value)).type == stored


def test_an_unknown_type_is_rejected_listing_the_allowed_ones():
    issue, = rejected(row(type="vip")).errors

    assert (issue.code, issue.field) == ("invalid_type", "type")
    assert "vip" in issue.message and "personal" in issue.message and "corporate" in issue.message


def test_the_set_of_types_is_configurable():
    rules = RowRules(client_types=("partner", "reseller"))

    assert accepted(row(type="Partner"), rules=rules).type == "partner"
    assert codes(row(type="personal"), rules=rules) == ["invalid_type"]


# --- security --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value", ["=SUM(A1:A2)", "+1-555", "-2+3", "@SUM(A1)", "\t=1", "\r=1", "  =1", "   @x", " \t+1",
              '=HYPERLINK("http://evil","x")'],
)
@pytest.mark.parametrize("column", ["firstName", "lastName", "project", "desk"])
def test_a_value_a_spreadsheet_would_run_is_refused(column: str, value: str):
    issue, = rejected(row(**{column: value})).errors

    assert (issue.code, issue.field) == ("formula_injection", column)
    assert column in issue.message and "formula" in issue.message


@pytest.mark.parametrize(
    "value",
    ["\uff1d1+2", "\uff0b4", "\uff0d2+3", "\uff20SUM(2)", "\ufe66HYPERLINK(1)", "\u22121", "\u3000=1", "\u00a0@x",
     "\u200b=1", "\ufeff+1", "\u2800=1", "\u3164=1", "\ufe0f-1", " \u3000\uff1d1", "\u2a751", "\u2a761"],
    ids=["full-width =", "full-width +", "full-width -", "full-width @", "small =", "minus sign", "ideographic space",
         "no-break space", "zero-width space", "BOM", "braille blank", "hangul filler", "variation selector", "mixed",
         "two equals in one", "three equals in one"],
)
def test_a_formula_behind_a_full_width_sign_or_invisible_characters_is_refused(value: str):
    issue, = rejected(row(lastName=value)).errors

    assert (issue.code, issue.field) == ("formula_injection", "lastName")
    assert "formula" in issue.message


@pytest.mark.parametrize("value", ["\u2066=1", "\x01=1", "\x00@x", "\u202e+1"])
def test_a_formula_behind_a_control_character_is_refused_as_a_formula_too(value: str):
    assert codes(row(desk=value)) == ["control_characters", "formula_injection"]


@pytest.mark.parametrize("value", ["Ann\uff1dLee", "\u00e9=1", "Jos\u00e9 \uff0b", "\uff21nn", "\u0301=x"])
def test_a_full_width_sign_inside_a_value_or_behind_a_visible_character_is_fine(value: str):
    assert accepted(row(lastName=value))


@pytest.mark.parametrize("field, value", [("lastName", "Smith-Jones"), ("project", "A=B"), ("desk", "Desk +1"),
                                          ("email", "ann+crm@x.com"), ("lastName", "a@b")])
def test_formula_characters_inside_a_value_are_fine(field: str, value: str):
    assert accepted(row(**{field: value}))


@pytest.mark.parametrize("value", ["<b>Ann</b>", "<script>alert(1)</script>", "Ann</div>", "< img src=x>",
                                   "javascript:alert(1)", "JavaScript :void(0)", "<!-- x -->"])
def test_markup_is_refused(value: str):
    issue, = rejected(row(lastName=value)).errors

    assert (issue.code, issue.field) == ("markup_content", "lastName")
    assert "lastName" in issue.message


@pytest.mark.parametrize("value", ["2 < 3", "a<3", "Lee > Smith"])
def test_comparison_signs_are_not_markup(value: str):
    assert accepted(row(project=value))


@pytest.mark.parametrize(
    "value",
    ["Ann\nLee", "Ann\r\nLee", "Ann\tLee", "Ann\x07", "Ann\x1b[31m", "Ann\x7f", "Ann\u0085Lee", "Ann\u202eeeL",
     "Ann\u202dLee", "\u2066Ann\u2069"],
    ids=["LF", "CRLF", "tab", "bell", "escape", "delete", "next line", "RLO", "LRO", "isolate"],
)
def test_control_characters_inside_a_value_are_refused(value: str):
    issue, = rejected(row(firstName=value)).errors

    assert (issue.code, issue.field) == ("control_characters", "firstName")
    assert "firstName" in issue.message


def test_a_message_shows_a_control_character_as_a_visible_mark_and_cuts_long_values():
    errors = {e.code: e for e in rejected(row(lastName="=\x07" + "x" * 200)).errors}

    assert set(errors) == {"formula_injection", "control_characters", "name_too_long"}
    formula = errors["formula_injection"]
    assert "\x07" not in formula.message and "=\ufffd" in formula.message
    assert "…" in formula.message and len(formula.message) < 200


# --- structure, repeats and collecting ----------------------------------------------------------------


def test_more_non_empty_values_than_header_columns_is_refused_with_both_counts():
    issue, = rejected(["Ann", "ann@x.com", "Lee", "Smith"], header=["firstName", "email"]).errors

    assert issue.code == "too_many_fields"
    assert "4 values" in issue.message and "2 columns" in issue.message


def test_empty_values_past_the_header_are_harmless():
    assert accepted(["Ann", "ann@x.com", "", "  "], header=["firstName", "email"])


@pytest.mark.parametrize("field, code", [("email", "duplicate_email"), ("username", "duplicate_username")])
def test_a_repeat_from_the_file_names_the_first_row(field: str, code: str):
    issue, = rejected(row(username="ann_1"), repeat=(field, 2)).errors

    assert (issue.code, issue.field) == (code, field)
    assert "row 2" in issue.message
    assert ("ann@x.com" if field == "email" else "ann_1") in issue.message


@pytest.mark.parametrize(
    "cells, expected",
    [
        (row(firstName="", email="bad", username="x", type="vip"),
         ["invalid_email", "invalid_type", "invalid_username", "missing_first_name"]),
        (row(firstName="A" * 101, project="P" * 101, desk="D" * 101),
         ["name_too_long", "value_too_long", "value_too_long"]),
        (row(firstName="=1", lastName="<b>x</b>", desk="a\x07"),
         ["control_characters", "formula_injection", "markup_content"]),
        (row(firstName="=1", email="bad"), ["formula_injection", "invalid_email"]),
        (row(lastName="<b>x</b>", type="vip"), ["invalid_type", "markup_content"]),
        (row(firstName="", desk="@x"), ["formula_injection", "missing_first_name"]),
    ],
    ids=["field errors", "lengths", "unsafe values", "formula and bad email", "markup and bad type",
         "missing name and formula"],
)
def test_a_row_collects_all_its_errors(cells: list[str], expected: list[str]):
    assert codes(cells) == expected


def test_an_unsafe_row_still_reports_that_it_repeats_an_earlier_row():
    assert codes(row(lastName="=1"), repeat=("email", 1)) == ["duplicate_email", "formula_injection"]


def test_too_many_fields_is_collected_with_the_other_errors():
    assert codes(["", "bad", "x"], header=["firstName", "email"]) == ["invalid_email", "missing_first_name",
                                                                      "too_many_fields"]


def test_a_rejected_row_keeps_its_numbers_and_original_values_by_header_name():
    result = rejected(["", " ann@x.com ", "note", "x"], header=["firstName", "email", "Notes", ""])

    assert (result.row, result.line) == (4, 6)
    assert result.original == {"firstName": "", "email": " ann@x.com ", "Notes": "note", "column 4": "x"}


# --- whole chunks ------------------------------------------------------------------------------------------


def test_a_chunk_is_split_into_accepted_and_rejected_rows_numbered_from_its_first_row():
    chunk = Chunk(
        job_id="j", index=1, count=2, first_row=11, lines=(14, 15, 17),
        csv="firstName,email\nAnn,ann@x.com\n,bob@x.com\nCid,cid@x.com\n",
        columns={"firstName": 0, "email": 1}, repeats={13: ("email", 2)},
    )

    good, bad = validate_chunk(chunk)

    assert [(r.row, r.line, r.values.email) for r in good] == [(11, 14, "ann@x.com")]
    assert [(r.row, r.line, [e.code for e in r.errors]) for r in bad] == [
        (12, 15, ["missing_first_name"]),
        (13, 17, ["duplicate_email"]),
    ]


def test_a_formula_escaped_by_a_report_and_uploaded_again_is_still_refused_but_an_apostrophe_name_is_not():
    assert [e.code for e in rejected(row(lastName="'=SUM(A1)")).errors] == ["formula_injection"]
    assert [e.code for e in rejected(row(lastName="'@cmd")).errors] == ["formula_injection"]
    assert [e.code for e in rejected(row(lastName="'\uff1d1+2")).errors] == ["formula_injection"]
    assert [e.code for e in rejected(row(lastName="' =1")).errors] == ["formula_injection"]
    assert accepted(row(lastName="'t Hooft")).last_name == "'t Hooft"


# The shortcut for plain values (shared/rules.py `_PLAIN_TEXT`) must never let through what the full check refuses.
@given(st.one_of(st.from_regex(_PLAIN_TEXT, fullmatch=True), st.text(max_size=40)))
@hypothesis_settings(max_examples=2000)
def test_the_plain_value_shortcut_gives_the_full_checks_answer(value: str):
    assert tuple(check_safe("firstName", value)) == tuple(_unsafe("firstName", value))


@pytest.mark.parametrize("value", ["=1+1", "@SUM(A1)", "-2", "+1", "<b>x", "javascript:alert(1)", "a\tb", " =1", "'=1"])
def test_values_the_shortcut_does_not_take_still_get_the_full_check(value: str):
    assert not _PLAIN_TEXT.fullmatch(value)
    assert check_safe("lastName", value)
