"""Detection on real containers: misconfigured starts, exec sessions, scanner and miner output
are judged at the edge and arrive in Elasticsearch as alerts; a well-behaved container raises nothing."""

from __future__ import annotations

import time

import pytest
from docker.types import LogConfig

from shipper.es_setup import run_setup

from .shipper_proc import count

ALERTS = {"term": {"event.kind": "alert"}}


@pytest.fixture(scope="module", autouse=True)
def templates(es):
    run_setup(es)


def rule_names(es, shipper, container_id: str, action: str | None = None, expect: int = 1, timeout: float = 30) -> set[str]:
    """Names of every rule that fired on the container's documents (optionally one event.action)."""
    filters = [ALERTS, {"term": {"container.id": container_id}}]
    if action:
        filters.append({"term": {"event.action": action}})
    query = {"bool": {"filter": filters}}
    deadline = time.monotonic() + timeout
    while count(es, shipper.index, query) < expect and time.monotonic() < deadline:
        time.sleep(0.5)
    hits = es.search(index=shipper.index, query=query, size=100)["hits"]["hits"]
    return {v["rule"]["name"] for hit in hits for v in hit["_source"]["shipper"]["verdicts"]}


def test_misconfigured_container_start_is_judged(es, run_container, shippers):
    shipper = shippers().start()
    risky = run_container(
        ["sleep", "300"], labels=shipper.labels, cap_add=["SYS_ADMIN"], pid_mode="host",
        security_opt=["seccomp=unconfined"],
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"}, "/etc": {"bind": "/host-etc", "mode": "ro"}},
    )
    fired = rule_names(es, shipper, risky.id, "start")
    assert fired == {
        "Container started with a dangerous capability",
        "Docker socket mounted into a container", "Sensitive host directory mounted into a container",
        "Container shares a host namespace", "Container runs without seccomp or AppArmor confinement",
        "Container runs as root", "Container runs without memory, CPU or pids limits",
    }
    query = {"bool": {"filter": [ALERTS, {"term": {"container.id": risky.id}}]}}
    doc = es.search(index=shipper.index, query=query)["hits"]["hits"][0]["_source"]
    assert doc["rule"]["name"] == "Docker socket mounted into a container"  # the most severe verdict leads
    assert doc["event"]["severity"] == 99 and doc["threat"]["tactic"]["id"] == "TA0004"
    assert doc["threat"]["technique"]["id"] == "T1611"
    assert "/var/run/docker.sock" in doc["shipper"]["container"]["security"]["mounts"]


def test_exec_sessions_are_judged(es, run_container, shippers):
    shipper = shippers().start()
    target = run_container(["sleep", "300"], labels=shipper.labels, user="nobody",
                           mem_limit="64m", nano_cpus=500_000_000, pids_limit=64)
    target.exec_run(["sh", "-c", "echo typed by hand"], tty=True, user="nobody")
    target.exec_run(["id"], privileged=True, user="nobody")
    target.exec_run(["sh", "-c", "apk add curl || true"], user="nobody")
    fired = rule_names(es, shipper, target.id, "exec_start", expect=3)
    assert fired == {"Terminal shell opened in a container with docker exec", "Privileged exec into a container",
                     "Package manager run in a running container"}


def test_scanner_and_miner_output_in_logs_are_judged(es, run_container, shippers):
    shipper = shippers().start()
    noisy = run_container(["sh", "-c", "echo 'Starting Nmap 7.94'; echo 'Nmap scan report for 127.0.0.1'; "
                                       "echo '[2026-11-28] net use pool stratum+tcp://127.0.0.1:3333 xmrig/6.21'; sleep 300"],
                          labels=shipper.labels, user="nobody", mem_limit="64m", nano_cpus=500_000_000, pids_limit=64)
    fired = rule_names(es, shipper, noisy.id, expect=4)
    # the miner's URL is also on the shell's command line, which the processes source sees
    assert fired == {"Port scanner output in a container's log", "Crypto-miner output in a container's log",
                     "Crypto-miner process in a container"}


def test_well_behaved_container_raises_nothing(es, run_container, shippers):
    shipper = shippers().start()
    calm = run_container(
        ["sh", "-c", "i=0; while [ $i -lt 50 ]; do echo \"127.0.0.1 - - GET /item/$i HTTP/1.1 200\"; i=$((i+1)); done; sleep 300"],
        labels=shipper.labels, user="nobody", mem_limit="64m", nano_cpus=500_000_000, pids_limit=64,
        log_config=LogConfig(type="json-file", config={"max-size": "1m"}),
    )
    calm.exec_run(["cat", "/etc/hostname"], user="nobody")  # a health-check-like exec
    deadline = time.monotonic() + 30
    query = {"bool": {"filter": [{"term": {"container.id": calm.id}}, {"term": {"event.dataset": "shipper.docker_logs"}}]}}
    while count(es, shipper.index, query) < 50 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert count(es, shipper.index, query) == 50
    time.sleep(2)  # the exec and start events have had time to arrive too
    assert count(es, shipper.index, {"bool": {"filter": [{"term": {"container.id": calm.id}}, ALERTS]}}) == 0
    execs = {"bool": {"filter": [{"term": {"container.id": calm.id}}, {"term": {"event.action": "exec_start"}}]}}
    assert count(es, shipper.index, execs) == 1


def test_privileged_container_is_judged(docker_client, test_image):
    """This sandbox refuses to start privileged containers ("unable to apply caps"), so the
    container is only created, and its start event is judged from the real inspect answer."""
    from shipper.containers import ContainerCache
    from shipper.detect.engine import RulesEngine
    from shipper.ecs import relocate
    from shipper.sources.docker_events import DockerEventsSource

    container = docker_client.containers.create(test_image, ["true"], privileged=True, network_mode="none",
                                                labels={"shipper.test": "1"})
    try:
        cache = ContainerCache(docker_client)
        event = DockerEventsSource(docker_client, cache).to_event(
            {"Type": "container", "Action": "start", "Actor": {"ID": container.id, "Attributes": {}},
             "timeNano": time.time_ns()})
        relocate(event.fields)  # as the pipeline does before detection
        judged = RulesEngine.from_paths([], cache.get).judge(event)
        assert "Container started privileged" in {v.rule_name for v in judged.verdicts}
        assert event.fields["shipper"]["container"]["security"]["privileged"] is True
    finally:
        container.remove(force=True)
