"""Files whose header names no field we know: a column map says which column is which, a saved mapping keeps
one under a name, a whole-name column is split, and every map that does not fit the file rejects it whole."""

import base64

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.uploader.intake import plan_job
from shared.events import Chunk, ImportOptions, ImportRequest, Issue, JobAccepted, JobRefused
from shared.fields import FIELDS, TARGETS, split_full_name
from shared.mappings import MAP_COLUMN_MAX, MAP_MAX_COLUMNS, combined_map
from shared.reading import Limits, ReadFile, read_file
from shared.rules import validate_chunk
from tests.catalogue import text

PARTNER = text("Vorname,Nachname,Mail,Notiz", "Ann,Lee,ann@x.com,hi", "Bob,,bob@x.com,")
PARTNER_MAP = {"Vorname": "firstName", "Nachname": "lastName", "Mail": "email", "Notiz": None}


def read(data: bytes, column_map=None) -> ReadFile:
    result = read_file(data, Limits(), column_map)
    assert isinstance(result, ReadFile), result
    return result


def refusal(data: bytes, column_map=None) -> Issue:
    result = read_file(data, Limits(), column_map)
    assert isinstance(result, Issue), result
    return result


def request(data: bytes, **options) -> ImportRequest:
    return ImportRequest(file_name="partner.csv", content_base64=base64.b64encode(data).decode(),
                         options=ImportOptions(**options))


# --- column maps ------------------------------------------------------------------------------------------


def test_a_column_map_reads_a_header_no_alias_matches():
    assert refusal(PARTNER).code == "missing_columns"

    result = read(PARTNER, PARTNER_MAP)

    assert result.columns == {"firstName": 0, "lastName": 1, "email": 2}
    assert result.header == ("Vorname", "Nachname", "Mail", "Notiz")  # errors.csv keeps the file's own header
    assert [w.code for w in result.warnings] == []  # the ignored column was the map's choice: no warning


def test_a_map_may_name_fields_by_their_key_and_columns_ignoring_case_and_spaces():
    result = read(PARTNER, {"vorname": "first_name", " MAIL ": "Email", "Nachname": "last name"})

    assert result.columns == {"firstName": 0, "lastName": 1, "email": 2}


def test_the_map_wins_over_a_recognised_column_for_the_same_field():
    data = text("email,Work Mail,firstName", "old@x.com,new@x.com,Ann")

    result = read(data, {"Work Mail": "email"})

    assert result.columns == {"email": 1, "firstName": 2}
    assert any(w.code == "unknown_columns" and "email" in w.message for w in result.warnings)


def test_a_map_can_ignore_a_recognised_column():
    result = read(text("firstName,email,lastName", "Ann,ann@x.com,Lee"), {"lastName": None})

    assert result.columns == {"firstName": 0, "email": 1}


def test_a_map_ignoring_a_column_the_file_does_not_have_still_fits_it():
    """A saved mapping that drops a partner's optional column serves that partner's files without it too."""
    result = read(text("Mail,Vorname", "ann@x.com,Ann"), {"Mail": "email", "Vorname": "firstName", "Notiz": None})

    assert result.columns == {"email": 0, "firstName": 1}


@pytest.mark.parametrize(
    "column_map, said",
    [
        ({"Mial": "email", "Vorname": "firstName"}, "the file has no column “Mial”"),
        ({"Mail": "e-mail-address", "Vorname": "firstName"}, "“e-mail-address” is not a client field"),
        ({"Mail": "email", "Notiz": "email", "Vorname": "firstName"}, "two columns are mapped to email (“Mail” and “Notiz”)"),
        ({"Mail": "email", "mail": "email", "Vorname": "firstName"}, "the column “Mail” is named twice"),
        ({"Mail": "phone", "Vorname": "nickname"}, "“phone” is not a client field"),
    ],
)
def test_a_map_that_does_not_fit_the_file_rejects_it_whole_naming_the_problem(column_map, said):
    issue = refusal(PARTNER, column_map)

    assert issue.code == "invalid_column_map"
    assert said in issue.message
    assert "Vorname" in issue.message  # the file's columns, to write a better map from


def test_a_map_naming_a_column_the_header_has_twice_is_invalid():
    issue = refusal(text("Mail,Mail,Vorname", "a@x.com,b@x.com,Ann"), {"Mail": "email", "Vorname": "firstName"})

    assert issue.code == "invalid_column_map" and "more than one column “Mail”" in issue.message


def test_every_problem_of_a_map_is_named_at_once():
    issue = refusal(PARTNER, {"A": "email", "B": "firstName", "Mail": "nope"})

    assert "“A”" in issue.message and "“B”" in issue.message and "“nope”" in issue.message


def test_a_map_that_leaves_a_required_field_unmapped_still_says_what_is_missing():
    issue = refusal(PARTNER, {"Vorname": "firstName"})

    assert issue.code == "missing_columns"
    assert '"email" is missing; the column "Mail" looks like it' in issue.message


def test_the_options_bound_a_column_map():
    with pytest.raises(ValidationError):
        ImportOptions(column_map={f"c{i}": "email" for i in range(MAP_MAX_COLUMNS + 1)})
    with pytest.raises(ValidationError):
        ImportOptions(column_map={"x" * (MAP_COLUMN_MAX + 1): "email"})
    with pytest.raises(ValidationError):
        ImportOptions(column_map={"": "email"})
    with pytest.raises(ValidationError):
        ImportOptions(column_map={"Mail": 3})
    with pytest.raises(ValidationError):
        ImportOptions(mapping="../etc/passwd")


# --- saved mappings, with column_map over them ----------------------------------------------------------------


def test_the_request_map_overrides_a_saved_mapping_column_by_column():
    saved = {"Mail": "email", "Vorname": "firstName", "Notiz": None}

    assert combined_map(saved, {"Notiz": "lastName"}) == {"Mail": "email", "Vorname": "firstName", "Notiz": "lastName"}
    # a field the request gives another column drops the saved column for it
    assert combined_map(saved, {"Work": "email"}) == {"Vorname": "firstName", "Notiz": None, "Work": "email"}


def test_a_job_records_the_saved_mapping_and_version_it_used_and_the_columns_it_read():
    saved = {"name": "partner", "version": 3, "columns": {"Vorname": "firstName", "Mail": "email"}}

    job, *chunks = plan_job(request(PARTNER, mapping="partner", column_map={"Notiz": None}), "j", Limits(), 500,
                            saved=saved)

    assert isinstance(job.event, JobAccepted)
    mapping = job.event.mapping
    assert (mapping.name, mapping.version) == ("partner", 3)
    assert mapping.columns == {"Vorname": "firstName", "Mail": "email", "Notiz": None}
    assert mapping.fields == {"firstName": "Vorname", "email": "Mail"}


def test_an_unknown_saved_mapping_rejects_the_file_whole():
    (job,) = plan_job(request(PARTNER, mapping="nobody"), "j", Limits(), 500, saved=None)

    assert isinstance(job.event, JobRefused)
    assert job.event.reason.code == "unknown_mapping" and "nobody" in job.event.reason.message
    assert (job.event.mapping.name, job.event.mapping.version) == ("nobody", None)


def test_an_invalid_map_rejects_the_job_and_the_refusal_records_the_map_tried():
    (job,) = plan_job(request(PARTNER, column_map={"Mial": "email"}), "j", Limits(), 500)

    assert isinstance(job.event, JobRefused) and job.event.reason.code == "invalid_column_map"
    assert job.event.mapping.columns == {"Mial": "email"}


# --- a whole-name column -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, parts",
    [
        ("Ann", {"firstName": "Ann"}),
        ("Ann Lee", {"firstName": "Ann", "lastName": "Lee"}),
        ("  Ann   Marie  Lee ", {"firstName": "Ann", "middleName": "Marie", "lastName": "Lee"}),
        ("Ann Marie Louise Lee", {"firstName": "Ann", "middleName": "Marie Louise", "lastName": "Lee"}),
        ("Lee, Ann Marie", {"firstName": "Ann", "middleName": "Marie", "lastName": "Lee"}),
        ("van der Berg, Jan", {"firstName": "Jan", "lastName": "van der Berg"}),
        ("Lee,", {"lastName": "Lee"}),
        ("   ", {}),
    ],
)
def test_a_whole_name_is_split_by_the_documented_rule(name, parts):
    assert split_full_name(name) == parts


@pytest.mark.parametrize("column", ["Name", "Full Name", "Contact Name", "full_name"])
def test_a_whole_name_column_with_no_first_name_column_gives_the_names(column):
    data = text(f"{column},Email", "Ann Marie Lee,ann@x.com", '"Lee, Bob",bob@x.com')
    result = read(data)

    assert result.columns == {"fullName": 0, "email": 1}
    accepted, rejected = validate_chunk(chunk_of(result))
    assert rejected == []
    assert [(a.values.first_name, a.values.middle_name, a.values.last_name) for a in accepted] == [
        ("Ann", "Marie", "Lee"), ("Bob", None, "Lee")]
    assert accepted[0].original == {column: "Ann Marie Lee", "Email": "ann@x.com"}


def test_a_whole_name_column_beside_a_first_name_column_is_ignored():
    result = read(text("Name,Given Name,Email", "Ann Lee,Ann,ann@x.com"))

    assert result.columns == {"firstName": 1, "email": 2}
    assert any(w.code == "unknown_columns" and "Name" in w.message for w in result.warnings)


def test_a_person_can_map_a_whole_name_column_otherwise():
    data = text("Name,Email", "Ann Lee,ann@x.com")

    as_first = read(data, {"Name": "firstName"})
    accepted, _ = validate_chunk(chunk_of(as_first))
    assert (accepted[0].values.first_name, accepted[0].values.last_name) == ("Ann Lee", None)

    assert refusal(data, {"Name": None}).code == "missing_columns"
    assert read(text("Kontakt,Email", "Ann Lee,ann@x.com"), {"Kontakt": "fullName"}).columns["fullName"] == 0


def test_a_whole_name_value_is_checked_like_any_value():
    _, rejected = validate_chunk(chunk_of(read(text("Name,Email", "=cmd|' /C calc'!A0,ann@x.com"))))

    assert [e.code for e in rejected[0].errors] == ["formula_injection"]


def chunk_of(result: ReadFile) -> Chunk:
    from services.uploader.chunking import to_csv

    return Chunk(job_id="j", index=0, count=1, first_row=1, lines=tuple(result.lines),
                 csv=to_csv(result.header, result.records), columns=result.columns)


# --- sep= and stray BOMs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("sep, delimiter", [("sep=;", ";"), ("SEP=,", ","), ("sep=\t", "\t"), ("sep=; ", ";")])
def test_excel_s_sep_line_names_the_delimiter_and_is_not_the_header(sep, delimiter):
    data = text(sep, delimiter.join(["firstName", "email"]), delimiter.join(["Ann", "ann@x.com"]), eol="\r\n")

    result = read(data)

    assert result.delimiter == delimiter
    assert result.header == ("firstName", "email")
    assert result.lines == [3]


def test_a_sep_line_wins_over_what_the_header_looks_like():
    # Semicolons in the header's names would make a guess choose them; Excel takes the sep= line's word.
    result = read(text("sep=,", "firstName,email,a;b;c", "Ann,ann@x.com,x"))

    assert result.delimiter == "," and result.columns == {"firstName": 0, "email": 1}


def test_a_sep_line_naming_another_delimiter_is_refused_clearly():
    issue = refusal(text("sep=|", "firstName|email", "Ann|ann@x.com"))

    assert issue.code == "malformed_csv" and "sep=|" in issue.message


@pytest.mark.parametrize(
    "prefix", [b"\xef\xbb\xbf\xef\xbb\xbf", b"\xef\xbb\xbf" * 3, "\u200b".encode(), b"\xef\xbb\xbf\xe2\x80\x8e"]
)
def test_stray_boms_and_invisible_characters_before_the_header_are_no_part_of_it(prefix):
    result = read(prefix + b'"firstName",email\nAnn,ann@x.com\n')

    assert result.header == ("firstName", "email")


def test_invisible_characters_inside_header_names_are_removed():
    result = read(text("first\u200bName, \ufeffemail\u2060 ,Last\u00adName", "Ann,ann@x.com,Lee"))

    assert result.header == ("firstName", "email", "LastName")
    assert result.columns == {"firstName": 0, "email": 1, "lastName": 2}


# --- properties: any column map, any header ---------------------------------------------------------------------

names = st.text(alphabet=st.sampled_from(list("abM il_-\u200b\ufeffé")), max_size=8)
fields = st.one_of(st.none(), st.sampled_from([*TARGETS, *(f.key for f in FIELDS), "phone", "", "E-MAIL"]))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(header=st.lists(names, min_size=1, max_size=6), column_map=st.dictionaries(names, fields, max_size=6))
def test_any_map_over_any_header_is_read_or_refused_with_a_code(header, column_map):
    data = text(",".join(f'"{h}"' for h in header), ",".join("x@y.z" for _ in header))
    result = read_file(data, Limits(), column_map)

    assert isinstance(result, ReadFile | Issue)
    if isinstance(result, Issue):
        assert result.code in {"invalid_column_map", "missing_columns", "duplicate_column", "empty_file",
                               "no_records", "too_many_columns"}
        return
    # what was read: every column at most one field, every required field (or a whole name) present
    assert len(set(result.columns.values())) == len(result.columns)
    assert "email" in result.columns and ("firstName" in result.columns or "fullName" in result.columns)
    for column, field_name in column_map.items():
        if field_name is None:
            assert column not in [result.header[i] for i in result.columns.values()] or column.strip() == ""


def test_a_wide_header_and_a_full_combined_map_are_matched_without_quadratic_work(monkeypatch):
    """Each header name is normalised once, and each map entry at most once: not once per (entry, name)."""
    import shared.reading as reading

    calls = 0
    normalise = reading.normalise_header

    def counted(name: str) -> str:
        nonlocal calls
        calls += 1
        return normalise(name)

    monkeypatch.setattr(reading, "normalise_header", counted)
    header = ["First Name", "E-Mail", *(f"Extra Column {i}" for i in range(498))]
    saved = {f"extra_column_{i}": None for i in range(MAP_MAX_COLUMNS)}  # found only ignoring case, spaces, '_'
    given = {f"Gone {i}": None for i in range(MAP_MAX_COLUMNS - 2)} | {"first_name": "firstName", "email": "email"}
    column_map = combined_map(saved, given)
    assert len(column_map) == 2 * MAP_MAX_COLUMNS

    matched = reading.match_columns(header, column_map)

    assert isinstance(matched, reading.Matched), matched
    assert matched.columns == {"firstName": 0, "email": 1} and len(matched.decided) == 500
    assert calls <= 2 * (len(header) + len(column_map))  # the old matching made ~700,000
