"""The local broker's set-up that needs no JVM: the ports it listens on."""

from clients_import.local_kafka import LocalKafka, _ports, free_ports


def test_ports_asked_for_together_are_distinct_so_the_two_listeners_never_collide():
    # One at a time, the system may hand the same port out twice; Kafka then refuses to start (CI run of stop 19).
    for _ in range(20):
        ports = free_ports(8)
        assert len(set(ports)) == 8


def test_a_written_server_properties_gives_back_the_clients_and_the_controllers_ports(tmp_path):
    kafka = LocalKafka()
    kafka.workdir = tmp_path
    port, controller = free_ports(2)
    assert _ports(kafka._properties(port, controller)) == (port, controller)
