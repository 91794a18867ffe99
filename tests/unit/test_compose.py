"""docker-compose.yml cannot run here (no Docker engine); at least it must name every service and real commands."""

from pathlib import Path

import yaml

from clients_import.cli import parser
from clients_import.topology import SERVICES

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())


def test_compose_runs_kafka_and_each_of_the_five_services():
    assert set(COMPOSE["services"]) == {"kafka", *SERVICES}
    assert COMPOSE["services"]["kafka"]["image"].startswith("apache/kafka:4.")
    assert COMPOSE["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_each_service_command_is_a_real_clients_import_command():
    for name in SERVICES:
        command = COMPOSE["services"][name]["command"]
        args = parser().parse_args(command)
        assert args.command.__name__ == "cmd_serve"
        assert args.services == [name]


def test_the_services_keep_their_database_on_a_volume():
    for name in SERVICES:
        assert any(v.endswith(":/app/data") for v in COMPOSE["services"][name]["volumes"])
        assert "clients-data" in COMPOSE["volumes"]
