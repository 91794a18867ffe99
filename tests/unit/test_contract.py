"""The committed AsyncAPI document is the contract partners read: it must match the code."""

import json
from pathlib import Path

from clients_import.contract import asyncapi_document
from shared import topics

COMMITTED = Path(__file__).parents[2] / "docs" / "asyncapi.json"


def test_the_committed_asyncapi_document_is_up_to_date():
    assert COMMITTED.read_text() == asyncapi_document(), (
        "docs/asyncapi.json is out of date: run `clients-import contract > docs/asyncapi.json`"
    )


def test_the_document_describes_every_public_topic():
    document = json.loads(COMMITTED.read_text())
    addresses = {channel["address"] for channel in document["channels"].values()}
    assert addresses == set(topics.ALL)
    assert {"ImportRequest", "ImportNotification", "ImportProgress"} <= set(document["components"]["schemas"])
