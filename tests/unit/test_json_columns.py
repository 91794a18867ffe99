"""What the database's JSON columns are handed (shared/db.py `json_text`)."""

import json

import pytest

from shared.db import json_text


@pytest.mark.parametrize("value", [
    {"firstName": "Zoë", "email": "zoe@example.com"},
    {"note": "x\u0000y\n\"quoted\""},
    [{"code": "invalid_email", "field": "email", "message": "“bad”"}],
    None,
    {"lone": "\ud800", "key\udfff": "v"},  # lone surrogates: Python's json parser lets them in
])
def test_every_value_a_json_column_is_given_reads_back_unchanged(value):
    assert json.loads(json_text(value)) == value
