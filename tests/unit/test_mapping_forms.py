"""The column map and mapping name an upload form carries: read into the contract, or refused with a 422
and a code, whatever the form holds."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.api.errors import ApiError
from services.api.mappings import form_column_map, form_mapping_name
from shared.events import ImportOptions

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=30), inner, max_size=4),
    max_leaves=12,
)


def test_a_json_object_of_columns_to_fields_or_null_is_taken():
    assert form_column_map({"column_map": '{"Mail": "email", "Vorname": "first_name", "Notiz": null}'}) == {
        "Mail": "email", "Vorname": "first_name", "Notiz": None}
    assert form_column_map({}) is None and form_column_map({"column_map": "  "}) is None


@pytest.mark.parametrize(
    "raw, code",
    [
        ("{not json", "invalid_json"),
        ("[" * 5000 + "]" * 5000, "invalid_json"),  # deeper than the parser goes
        ('["Mail", "email"]', "invalid_column_map"),
        ('{"Mail": 3}', "invalid_column_map"),
        ('{"Mail": "phone"}', "invalid_column_map"),
        ('{"": "email"}', "invalid_column_map"),
        (json.dumps({f"c{i}": None for i in range(501)}), "invalid_column_map"),
        (json.dumps({"x" * 201: "email"}), "invalid_column_map"),
    ],
)
def test_a_bad_column_map_field_is_refused_with_422_and_a_code(raw, code):
    with pytest.raises(ApiError) as refused:
        form_column_map({"column_map": raw})

    assert (refused.value.status, refused.value.code) == (422, code)


@pytest.mark.parametrize("name", ["../x", "a b", "-x", "x" * 65, "naïve", "a/b"])
def test_a_mapping_name_outside_the_pattern_is_refused(name):
    with pytest.raises(ApiError) as refused:
        form_mapping_name({"mapping": name})

    assert refused.value.code == "invalid_mapping_name"


@settings(max_examples=300, deadline=None)
@given(st.one_of(json_values.map(json.dumps), st.text(max_size=80)))
def test_any_column_map_field_becomes_options_or_a_422_with_a_code(raw):
    try:
        columns = form_column_map({"column_map": raw})
    except ApiError as refused:
        assert refused.status == 422 and refused.code in {"invalid_json", "invalid_column_map"}
        return
    assert ImportOptions(column_map=columns).column_map == columns  # what is taken, the contract takes too


def test_the_settings_document_gives_the_page_the_aliases_and_what_a_map_may_name():
    from services.api.app import import_settings_document
    from shared.settings import Settings

    document = import_settings_document(Settings(_env_file=None))

    email = next(f for f in document["fields"] if f["name"] == "email")
    assert "E-mail Address" in email["aliases"]
    assert "fullName" in document["column_map"]["targets"]
    assert "Full Name" in document["column_map"]["full_name"]["aliases"]
