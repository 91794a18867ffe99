"""The API's own safety settings, without a broker."""

import pytest
from faststream.kafka.fastapi import KafkaRouter

from services.api.app import build_api
from shared.settings import Settings


def test_the_api_refuses_to_start_without_a_token_unless_told_it_runs_for_development():
    router = KafkaRouter("127.0.0.1:9", schema_url=None)
    with pytest.raises(RuntimeError, match="API_TOKEN"):
        build_api(Settings(_env_file=None), engine=None, router=router)
    assert build_api(Settings(api_dev_mode=True, _env_file=None), engine=None, router=router) is not None


def test_the_api_listens_on_loopback_unless_told_otherwise():
    assert Settings(_env_file=None).api_host == "127.0.0.1"



def test_the_openapi_document_describes_the_undo_route_and_its_refusals():
    router = KafkaRouter("127.0.0.1:9", schema_url=None)
    document = build_api(Settings(api_dev_mode=True, _env_file=None), engine=None, router=router).openapi()

    undo = document["paths"]["/imports/{job_id}/undo"]["post"]
    assert {"202", "404", "409"} <= set(undo["responses"])
    assert all(code in undo["responses"]["409"]["description"]
               for code in ("already_undone", "not_finished", "nothing_to_undo", "too_old"))
    assert "get" in document["paths"]["/imports/{job_id}/conflicts.csv"]
