"""The public contract as an AsyncAPI document, generated from the services' own registrations."""

import json

from faststream.specification.asyncapi import AsyncAPI

from shared.kafka import build_broker
from shared.settings import Settings

from .pipeline import Pipeline

TITLE = "Client Import"
VERSION = "1"
DESCRIPTION = (
    "Bulk client import for the CRM. Partners publish an ImportRequest on clients.import.requests and "
    "read the ImportNotification of their job on clients.import.notifications (and its progress on "
    "clients.import.progress). Every event is JSON with a schema_version."
)


def asyncapi_document() -> str:
    settings = Settings(kafka_bootstrap_servers="kafka:9092", _env_file=None)
    broker = build_broker(settings)
    Pipeline(settings).register(broker)  # registers only: nothing connects
    spec = AsyncAPI(broker, title=TITLE, version=VERSION, description=DESCRIPTION, schema_version="3.0.0")
    return json.dumps(spec.to_specification().to_jsonable(), indent=2, sort_keys=True) + "\n"
