"""docker-compose.elk.yml, run: certs, elasticsearch, setup, shipper-setup and shipper come up
with Debian's docker-compose 1.29 and do what the README says.

No registry here: Elasticsearch is the test bed's stand-in image (the distribution zip laid
out like the stock image, scripts/testbed/elasticsearch-image/), tagged with the name the
compose file uses; the shipper's image is built as in test_image.py. Kibana and Logstash
have no image here: they are left out, and shipper-setup runs without the Kibana import.

What this test changes in the compose file, and only here (the override): every service on
the host network (no bridge networks on these machines), `elasticsearch` pointing at
127.0.0.1, Elasticsearch on ports 9210/9310 (the bed's own nodes use 9200/9201/9300/9301),
a 512 MB heap, the shipper following only this test's containers. The services' commands
(certs, setup) run unchanged.
"""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import tarfile
import time
import uuid
from pathlib import Path

import docker
import pytest
import yaml
from elasticsearch import AuthenticationException, AuthorizationException, Elasticsearch

from ..conftest import _missing
from .shipper_proc import free_port
from .test_image import shipper_image  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.elk.yml"
ES_VERSION = os.environ.get("SHIPPER_TESTBED_ES_VERSION", "8.19.21")
ES_IMAGE = f"docker.elastic.co/elasticsearch/elasticsearch:{ES_VERSION}"
HTTP_PORT, TRANSPORT_PORT = 9210, 9310
ES_URL = f"https://127.0.0.1:{HTTP_PORT}"
RAN_HERE = ["certs", "elasticsearch", "setup", "shipper-setup", "shipper"]
NOT_HERE = ["kibana", "logstash"]


def override(compose: dict, *, image: str, run_id: str, monitor_port: int) -> dict:
    services = compose["services"]
    for name in NOT_HERE:
        del services[name]
    for service in services.values():
        service.pop("ports", None)
        service["network_mode"] = "host"
        service["extra_hosts"] = ["elasticsearch:127.0.0.1"]
        service["labels"] = {"shipper.test": "1", "shipper.test.run": run_id}
    services["elasticsearch"]["environment"].update({
        "http.port": str(HTTP_PORT), "transport.port": str(TRANSPORT_PORT), "network.host": "127.0.0.1",
        "cluster.routing.allocation.disk.threshold_enabled": "false", "ES_JAVA_OPTS": "-Xms512m -Xmx512m"})
    health = services["elasticsearch"]["healthcheck"]
    health["test"] = [part.replace("localhost:9200", f"localhost:{HTTP_PORT}") for part in health["test"]]
    services["setup"]["environment"]["ELASTICSEARCH_URL"] = f"https://elasticsearch:{HTTP_PORT}"
    for name in ("shipper-setup", "shipper"):
        service = services[name]
        service.pop("build", None)
        service.pop("pull_policy", None)
        service["image"] = image
        service["environment"]["SHIPPER_ELASTICSEARCH__HOSTS"] = f"https://elasticsearch:{HTTP_PORT}"
    services["shipper-setup"]["depends_on"] = {"setup": {"condition": "service_completed_successfully"}}
    services["shipper-setup"]["command"] = ["setup"]
    services["shipper"]["environment"].update({
        "SHIPPER_DOCKER__INCLUDE__LABELS": f"shipper.test.run={run_id}",
        "SHIPPER_MONITOR__HOST": "127.0.0.1", "SHIPPER_MONITOR__PORT": str(monitor_port),
        "SHIPPER_PIPELINE__FLUSH_INTERVAL": "0.2"})
    services["shipper"]["restart"] = "no"
    return compose


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = secrets.token_urlsafe(12) if key.endswith("_PASSWORD") else value
    values["STACK_VERSION"] = ES_VERSION
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return values


def read_file(container, path: str) -> bytes:
    stream, _ = container.get_archive(path)
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return tar.extractfile(tar.getmembers()[0]).read()


def count(client: Elasticsearch, index: str, query: dict) -> int:
    client.indices.refresh(index=index, ignore_unavailable=True)
    return client.count(index=index, query=query, ignore_unavailable=True)["count"]


@pytest.fixture
def stack(docker_client, tmp_path, shipper_image):  # noqa: F811
    try:
        docker_client.images.get(ES_IMAGE)
    except docker.errors.ImageNotFound:
        _missing(f"the Elasticsearch stand-in image {ES_IMAGE}", "not built by scripts/testbed.sh up")
    run_id = uuid.uuid4().hex[:10]
    project = f"shippertest{run_id}"
    compose_file = tmp_path / "docker-compose.test.yml"
    compose = override(yaml.safe_load(COMPOSE.read_text()), image=shipper_image, run_id=run_id,
                       monitor_port=free_port())
    compose_file.write_text(yaml.safe_dump(compose, sort_keys=False))
    values = env_file(tmp_path / ".env")
    base = ["docker-compose", "-p", project, "-f", str(compose_file), "--env-file", str(tmp_path / ".env")]

    def compose_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=timeout)

    try:
        yield {"run": compose_run, "project": project, "run_id": run_id, "env": values}
    finally:
        compose_run("down", "-v", "--remove-orphans", "--timeout", "30")


def leftovers(docker_client, project: str) -> list[str]:
    label = f"com.docker.compose.project={project}"
    return ([c.name for c in docker_client.containers.list(all=True, filters={"label": label})]
            + [v.name for v in docker_client.volumes.list(filters={"label": label})]
            + [n.name for n in docker_client.networks.list(filters={"label": label})])


def test_compose_stack_runs_and_keeps_its_promises(docker_client, stack, run_container, tmp_path):
    run, project, env = stack["run"], stack["project"], stack["env"]
    up = run("up", "-d", "--no-build", "shipper")
    assert up.returncode == 0, up.stdout + up.stderr + run("logs", "--tail", "20").stdout
    containers = {c.labels["com.docker.compose.service"]: c for c in docker_client.containers.list(
        all=True, filters={"label": f"com.docker.compose.project={project}"})}
    assert sorted(containers) == sorted(RAN_HERE)
    for one_shot in ("certs", "setup", "shipper-setup"):
        containers[one_shot].reload()
        assert containers[one_shot].attrs["State"]["ExitCode"] == 0, containers[one_shot].logs().decode()[-2000:]
    assert not [n for n in docker_client.networks.list(filters={"label": f"com.docker.compose.project={project}"})]

    # Certificates made by `certs`; the node is healthy, serves TLS with them, security on.
    certs = containers["elasticsearch"]
    assert certs.attrs["State"]["Health"]["Status"] == "healthy"
    ca = tmp_path / "ca.crt"
    ca.write_bytes(read_file(certs, "/usr/share/elasticsearch/config/certs/ca/ca.crt"))
    assert read_file(certs, "/usr/share/elasticsearch/config/certs/elasticsearch/elasticsearch.crt").startswith(
        b"-----BEGIN CERTIFICATE-----")
    try:
        admin = Elasticsearch(ES_URL, ca_certs=str(ca), basic_auth=("elastic", env["ELASTIC_PASSWORD"]))
        assert admin.cluster.health(wait_for_status="yellow", timeout="30s")["status"] in ("green", "yellow")
        with pytest.raises(AuthenticationException):
            Elasticsearch(ES_URL, ca_certs=str(ca)).cluster.health()

        # `setup` made the roles and the users, and set kibana_system's password.
        roles = admin.security.get_role(name="shipper_writer,shipper_auditor")
        assert [(i["names"], i["privileges"]) for i in roles["shipper_writer"]["indices"]] == [
            (["logs-shipper.*"], ["create_doc", "auto_configure"]), (["logs-shipper.events-*"], ["read"])]
        assert {"feature_discover_v2.read", "feature_dashboard_v2.read"} <= set(
            roles["shipper_auditor"]["applications"][0]["privileges"])
        assert set(admin.security.get_user(username="shipper_writer,auditor")) == {"shipper_writer", "auditor"}
        kibana = Elasticsearch(ES_URL, ca_certs=str(ca), basic_auth=("kibana_system", env["KIBANA_PASSWORD"]))
        assert kibana.security.authenticate()["username"] == "kibana_system"

        # The shipper (as shipper_writer) ships a labelled container's lines and an alert.
        writer = run_container(["sh", "-c", "i=0; while [ $i -lt 40 ]; do echo compose line $i; i=$((i+1)); done; "
                                            "sleep 2; nc -l -p 4444 -e /bin/sh & sleep 60"],
                               labels={"shipper.test.run": stack["run_id"]})
        index = "logs-shipper.events-default"
        lines = {"bool": {"filter": [{"term": {"container.id": writer.id}},
                                     {"term": {"event.dataset": "shipper.docker_logs"}}]}}
        alert = {"bool": {"filter": [{"term": {"container.id": writer.id}}, {"term": {"event.kind": "alert"}}]}}
        deadline = time.monotonic() + 120
        while (count(admin, index, lines) < 40 or count(admin, index, alert) < 1) and time.monotonic() < deadline:
            time.sleep(1)
        shipper_log = containers["shipper"].logs(tail=30).decode(errors="replace")
        assert count(admin, index, lines) == 40, shipper_log
        assert count(admin, index, alert) >= 1, shipper_log
        shipper_env = dict(e.split("=", 1) for e in containers["shipper"].attrs["Config"]["Env"])
        assert shipper_env["SHIPPER_ELASTICSEARCH__USERNAME"] == "shipper_writer"

        # The auditor can search them and cannot write; the writer cannot delete or overwrite.
        auditor = Elasticsearch(ES_URL, ca_certs=str(ca), basic_auth=("auditor", env["AUDITOR_PASSWORD"]))
        assert auditor.count(index="logs-shipper.*", query=lines)["count"] == 40
        with pytest.raises(AuthorizationException):
            auditor.index(index=index, document={"@timestamp": "2026-01-01T00:00:00Z", "message": "forged"})
        writer_client = Elasticsearch(ES_URL, ca_certs=str(ca),
                                      basic_auth=("shipper_writer", env["SHIPPER_WRITER_PASSWORD"]))
        one = writer_client.search(index=index, query=lines, size=1)["hits"]["hits"][0]
        denied = writer_client.bulk(operations=[{"delete": {"_index": one["_index"], "_id": one["_id"]}},
                                                {"update": {"_index": one["_index"], "_id": one["_id"]}},
                                                {"doc": {"message": "overwritten"}}])
        assert [next(iter(item.values()))["status"] for item in denied["items"]] == [403, 403]
    finally:
        ca.unlink(missing_ok=True)

    # `down -v` leaves nothing behind: no container, volume or network of the project.
    down = run("down", "-v", "--timeout", "30")
    assert down.returncode == 0, down.stderr
    assert leftovers(docker_client, project) == []
