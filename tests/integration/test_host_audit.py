"""The Docker host audit on real engines: a second engine of the test's own, published on TCP without
TLS, against the test bed's; image provenance of real containers; Trivy reports joined to a running
container; and `shipper audit` as a CI job would run it."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import docker
import pytest

from shipper.audit import run_audit
from shipper.config import load_config
from shipper.es_setup import run_setup

from .shipper_proc import ROOT, count, free_port

TCP_RULE = "Docker API published on TCP without TLS"
SOCKET_RULE = "Docker socket writable by every user"
TAG_RULE = "Image referenced by tag, not digest"
VULN_RULE = "Fixable critical or high vulnerability in a running container"
TRIVY = ROOT.parent / "shared" / "corpora" / "trivy"


@pytest.fixture(scope="module", autouse=True)
def templates(es):
    run_setup(es)


@pytest.fixture(scope="module")
def second_engine(docker_client):
    """A dockerd of this test's own: its data root, exec root, pidfile and unix socket, and the API on
    tcp://127.0.0.1:<port> without TLS. No bridge, no iptables; stopped by its PID, its directories removed."""
    if not shutil.which("dockerd"):
        pytest.skip("dockerd is not installed")
    # a short path: a unix socket's path must fit in 108 bytes
    home = Path(tempfile.mkdtemp(prefix="shipper-dockerd-", dir="/tmp"))
    (home / "daemon.json").write_text("{}")
    port = free_port()
    socket_path = home / "docker.sock"
    log = open(home / "dockerd.log", "wb")
    process = subprocess.Popen(
        ["dockerd", "--data-root", str(home / "data"), "--exec-root", str(home / "exec"),
         "--pidfile", str(home / "dockerd.pid"), "--config-file", str(home / "daemon.json"),
         "-H", f"unix://{socket_path}", "-H", f"tcp://127.0.0.1:{port}",
         "--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false", "--storage-driver=vfs"],
        stdout=log, stderr=subprocess.STDOUT)
    log.close()
    url = f"unix://{socket_path}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                docker.DockerClient(base_url=url).ping()
                break
            except Exception:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"the second dockerd did not come up:\n{(home / 'dockerd.log').read_text()[-3000:]}") from None
                time.sleep(0.3)
        yield {"url": url, "socket": socket_path, "port": port, "pid": process.pid, "home": home}
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(30)
        subprocess.run(["umount", "-R", str(home / "exec")], capture_output=True)  # netns mounts, if any
        shutil.rmtree(home, ignore_errors=True)


def audit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shipper", "audit", "--log-level", "warning", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


# a label no container has: the container part of the audit stays empty, the engine is what is judged
NO_CONTAINERS = "docker.include.labels=shipper.test.audit=none"


def test_tcp_without_tls_is_critical_and_fails_ci(second_engine):
    found = audit_cli("--format", "json", "--set", f"docker.url={second_engine['url']}", "--fail-on", "high")
    assert found.returncode == 1, found.stderr
    findings = json.loads(found.stdout)["findings"]
    tcp = [f for f in findings if f["check"] == TCP_RULE]
    assert len(tcp) == 1 and tcp[0]["severity"] == "critical" and tcp[0]["benchmark"] == "2.7"
    assert f"tcp://127.0.0.1:{second_engine['port']}" in tcp[0]["object"] and tcp[0]["remediation"]


def test_the_beds_engine_has_no_tcp_finding_and_passes_ci():
    found = audit_cli("--format", "json", "--set", NO_CONTAINERS, "--fail-on", "high")
    assert found.returncode == 0, found.stdout + found.stderr
    checks = {f["check"] for f in json.loads(found.stdout)["findings"]}
    assert checks and TCP_RULE not in checks and SOCKET_RULE not in checks


def test_world_writable_socket(second_engine):
    os.chmod(second_engine["socket"], 0o666)
    try:
        found = audit_cli("--format", "ndjson", "--set", f"docker.url={second_engine['url']}")
    finally:
        os.chmod(second_engine["socket"], 0o660)
    assert found.returncode == 0, found.stderr  # no --fail-on: findings alone never fail the command
    checks = [json.loads(line)["check"] for line in found.stdout.splitlines()]
    assert SOCKET_RULE in checks
    again = audit_cli("--format", "ndjson", "--set", f"docker.url={second_engine['url']}")
    assert SOCKET_RULE not in [json.loads(line)["check"] for line in again.stdout.splitlines()]


def test_audit_ships_the_finding_to_elasticsearch(es, second_engine):
    namespace = f"t{uuid.uuid4().hex[:10]}"
    settings = ["--set", f"docker.url={second_engine['url']}", "--set", f"elasticsearch.namespace={namespace}"]
    if os.environ.get("ES_URL"):
        settings += ["--set", f"elasticsearch.hosts={os.environ['ES_URL']}"]
    index = f"logs-shipper.events-{namespace}"
    try:
        shipped = audit_cli("--ship", *settings)
        assert shipped.returncode == 0, shipped.stderr
        es.indices.refresh(index=index)
        hits = es.search(index=index, query={"term": {"shipper.verdicts.rule.name": TCP_RULE}})["hits"]["hits"]
        assert len(hits) == 1
        doc = hits[0]["_source"]
        assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 99 and doc["rule"]["name"] == TCP_RULE
        assert doc["shipper"]["remediation"].startswith("Remove the tcp:// host")
        assert doc["shipper"]["engine"]["tcp_listeners"] == [f"tcp://127.0.0.1:{second_engine['port']}"]
    finally:
        tolerant = es.options(ignore_status=(400, 404, 405))  # a data stream, or a plain index where the cluster has none
        tolerant.indices.delete_data_stream(name=index)
        tolerant.indices.delete(index=index)


def test_running_shipper_audits_the_host_and_again_on_reload(es, second_engine, shippers):
    shipper = shippers(f"docker.url={second_engine['url']}", "sources.host_config.enabled=true",
                       "sources.host_config.interval=3600").start()
    audits = {"term": {"event.dataset": "shipper.host_config"}}
    deadline = time.monotonic() + 60
    while count(es, shipper.index, audits) < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    hits = es.search(index=shipper.index, query=audits)["hits"]["hits"]
    assert len(hits) == 1, shipper.log_tail()
    assert hits[0]["_source"]["rule"]["name"] == TCP_RULE  # the most severe finding leads the document
    os.kill(second_engine["pid"], signal.SIGHUP)  # dockerd reloads its configuration: a `daemon reload` event
    deadline = time.monotonic() + 60
    while count(es, shipper.index, audits) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    hits = es.search(index=shipper.index, query=audits)["hits"]["hits"]
    assert len(hits) == 2, shipper.log_tail()
    assert all(hit["_source"]["rule"]["name"] == TCP_RULE for hit in hits)  # the reload's audit is judged whole too


def test_image_referenced_by_digest_or_by_tag(docker_client, test_image, run_container, monkeypatch):
    run_id = uuid.uuid4().hex[:10]
    labels = {"shipper.test.audit": run_id}
    image_id = docker_client.images.get(test_image).id
    by_tag = run_container(["sleep", "120"], labels=labels)
    by_id = run_container(["sleep", "120"], image=image_id, labels=labels)
    config = load_config(None, overrides=[f"docker.include.labels=shipper.test.audit={run_id}"])
    monkeypatch.setattr("shipper.audit.PROGRESS_FROM", 1)  # "many containers", here: any
    out, err = io.StringIO(), io.StringIO()
    run_audit(config, fmt="json", out=out, err=err)
    done, total = re.fullmatch(r"audited (\d+)/(\d+) containers", err.getvalue().splitlines()[-1]).groups()
    assert done == total and int(total) >= 2  # progress on stderr, not in the JSON
    findings = json.loads(out.getvalue())["findings"]
    tagged = {f["check"] for f in findings if by_tag.name in f["object"]}
    pinned = {f["check"] for f in findings if by_id.name in f["object"]}
    assert TAG_RULE in tagged and TAG_RULE not in pinned
    # the rest of the image's facts are the same image's: root, no HEALTHCHECK
    assert {"Image runs as root by default", "Image has no HEALTHCHECK"} <= tagged & pinned


@pytest.mark.skipif(not TRIVY.is_dir(), reason=f"the Trivy corpus {TRIVY} is absent")
def test_trivy_report_joined_to_a_running_container(es, docker_client, test_image, run_container, shippers, tmp_path):
    """Also: every generated Kibana search finds exactly what the live evaluator judged, on host,
    image and vulnerability documents alike."""
    from tests.scenarios.searches import check_searches

    reports = tmp_path / "reports"
    reports.mkdir()
    shipper = shippers(f"sources.vulnerabilities.directory={reports}", "detection.images.enabled=true",
                       "sources.host_config.enabled=true", subdir="shipper").start()
    target = run_container(["sleep", "120"], labels=shipper.labels)
    pinned = run_container(["sleep", "120"], image=docker_client.images.get(test_image).id, labels=shipper.labels)
    image = docker_client.images.get(test_image)
    report = json.loads((TRIVY / "debian-buster.json").read_text())
    report["Metadata"]["ImageID"] = image.id  # only the image's identity is rewritten: the scan is Trivy's
    report["Metadata"]["RepoDigests"] = image.attrs.get("RepoDigests") or []
    staging = reports / "debian-buster.tmp"
    staging.write_text(json.dumps(report))
    staging.rename(reports / "debian-buster.json")  # dropped into the watched directory whole
    mine = {"bool": {"filter": [{"term": {"event.dataset": "shipper.vulnerability"}},
                                {"term": {"container.id": target.id}}]}}
    expected = sum(len(r.get("Vulnerabilities") or []) for r in report["Results"])
    deadline = time.monotonic() + 60
    while count(es, shipper.index, mine) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    docs = {hit["_source"]["vulnerability"]["id"]: hit["_source"]
            for hit in es.search(index=shipper.index, query=mine, size=100)["hits"]["hits"]}
    assert set(docs) == {"CVE-2019-18224", "CVE-2019-18276"}, shipper.log_tail()
    critical = docs["CVE-2019-18224"]
    assert critical["container"]["name"] == target.name and critical["package"]["name"] == "libidn2-0"
    assert critical["shipper"]["vulnerability"]["fixed_version"] == "2.0.5-1+deb10u1"
    assert critical["event"]["kind"] == "alert" and critical["rule"]["name"] == VULN_RULE
    assert docs["CVE-2019-18276"]["event"]["kind"] == "event"  # low, and no fix: no alert
    starts = {"bool": {"filter": [{"term": {"event.action": "start"}},
                                  {"terms": {"container.id": [target.id, pinned.id]}}]}}
    deadline = time.monotonic() + 30
    while (count(es, shipper.index, starts) < 2 or count(es, shipper.index, {"term": {"event.dataset": "shipper.host_config"}}) < 1) \
            and time.monotonic() < deadline:
        time.sleep(0.5)
    tag_rule = {hit["_source"]["container"]["id"]: TAG_RULE in {v["rule"]["name"] for v in hit["_source"]["shipper"]["verdicts"]}
                for hit in es.search(index=shipper.index, query=starts)["hits"]["hits"]}
    assert tag_rule == {target.id: True, pinned.id: False}
    assert check_searches(es, shipper.index) == []


def test_image_pull_is_judged(docker_client, test_image):
    """No registry answers here, so the engine's pull event is written as the engine sends it;
    its image is the real one, inspected by the real engine."""
    from shipper.app import image_checker
    from shipper.containers import ContainerCache
    from shipper.detect.engine import RulesEngine
    from shipper.sources.docker_events import DockerEventsSource

    source = DockerEventsSource(docker_client, ContainerCache(docker_client),
                                images=image_checker(load_config(None), docker_client))
    event = source.to_event({"Type": "image", "Action": "pull", "Actor": {"ID": test_image, "Attributes": {"name": test_image}},
                             "timeNano": time.time_ns()})
    assert event.fields["shipper"]["image"]["id"] == docker_client.images.get(test_image).id
    fired = {v.rule_name for v in RulesEngine.from_paths([]).judge(event).verdicts}
    assert fired == {TAG_RULE, "Image runs as root by default", "Image has no HEALTHCHECK"}
