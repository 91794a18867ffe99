"""Static group membership: the consumer options, the instance names `serve` claims, the local broker's folder."""

import subprocess
import sys

import pytest

from clients_import.local_kafka import _ports, _read_properties
from shared.kafka import check_instance_name, claim_instance_name, consumer_options, group_instance_id
from shared.settings import Settings


def _settings(**values) -> Settings:
    return Settings(kafka_bootstrap_servers="127.0.0.1:9", group_prefix="unit", _env_file=None, **values)


def test_a_named_process_is_a_static_member_of_each_stage_group_and_an_unnamed_one_a_dynamic_member():
    named = consumer_options(_settings(instance_name="host-1"), "writer")
    assert (named["group_id"], named["group_instance_id"]) == ("unit.writer", "host-1.writer")
    assert consumer_options(_settings(), "writer")["group_instance_id"] is None
    assert consumer_options(_settings(instance_name=""), "writer")["group_instance_id"] is None


@pytest.mark.parametrize("name", ["a b", "host/1", "né", "x" * 101])
def test_an_instance_name_kafka_would_refuse_is_refused_up_front(name):
    with pytest.raises(ValueError, match="INSTANCE_NAME"):
        check_instance_name(name)
    if len(name) <= 100:  # the setting's own bound refuses longer ones first
        with pytest.raises(ValueError):
            group_instance_id(_settings(instance_name=name), "writer")


def test_processes_on_one_host_claim_distinct_names_and_a_restarted_one_takes_its_predecessors(tmp_path):
    """Each claim in its own process (a lock is held for as long as the process lives)."""
    code = (
        "import sys, time; from shared.kafka import claim_instance_name; from shared.settings import Settings; "
        "s = Settings(group_prefix='unit', _env_file=None); "
        "print(claim_instance_name(s, sys.argv[2].split(','), __import__('pathlib').Path(sys.argv[1])), flush=True); "
        "time.sleep(60)"
    )

    def claim(stages: str) -> tuple[subprocess.Popen, str]:
        process = subprocess.Popen([sys.executable, "-c", code, str(tmp_path), stages], stdout=subprocess.PIPE, text=True)
        return process, process.stdout.readline().strip()

    started = []
    try:
        first, a = claim("writer")
        started.append(first)
        second, b = claim("writer")
        started.append(second)
        third, c = claim("validator")  # another group: the first number is free there
        started.append(third)
        assert a != b and b == f"{a}-1" and c == a
        first.kill()
        first.wait(timeout=10)
        again, d = claim("writer")  # started again after a kill: the name its predecessor had
        started.append(again)
        assert d == a
        both, e = claim("validator,writer")  # a number free in every group it joins
        started.append(both)
        assert e == f"{a}-2"
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=10)


def test_a_claim_in_this_process_holds_until_the_process_ends(tmp_path):
    settings = _settings()
    first = claim_instance_name(settings, ["notifier"], tmp_path)
    assert claim_instance_name(settings, ["notifier"], tmp_path) == f"{first}-1"


def test_the_local_broker_reads_its_ports_back_from_the_properties_it_wrote():
    text = ("process.roles=broker,controller\nlisteners=PLAINTEXT://127.0.0.1:40001,CONTROLLER://127.0.0.1:40002\n"
            "# a comment=ignored\nlog.dirs=/tmp/x\n")
    assert _ports(text) == (40001, 40002)
    assert _read_properties("cluster.id=ab=c\nversion=1\n") == {"cluster.id": "ab=c", "version": "1"}
