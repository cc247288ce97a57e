"""Against the bed's second node (TLS with our own CA, security on): verified TLS,
a user that may only create documents, an API key that may only create documents,
and secrets that never reach the log.

API keys and native users need the .security index, whose `email` analyzer the
integ-test zip cannot build by itself: the bed adds a small analysis plugin for it
(scripts/testbed/analysis-plugin/)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from elasticsearch import AuthorizationException, Elasticsearch

from shipper.es_setup import run_setup

from .shipper_proc import count, wait_for_count

SECURE_DIR = Path(os.environ.get("SHIPPER_TESTBED_DIR", "/var/lib/shipper-testbed")) / "es-secure"
SECURE_URL = (SECURE_DIR / "url").read_text().strip() if (SECURE_DIR / "url").is_file() else "https://127.0.0.1:9201"
WRITER = "shipper-writer"  # file-realm role: create_doc + auto_configure on logs-shipper.*


@pytest.fixture(scope="module")
def secure_es():
    if os.environ.get("ES_URL"):
        pytest.skip("ES_URL is set: the bed's secure node is not started")
    password_file = SECURE_DIR / "admin-password"
    message = f"the bed's TLS node at {SECURE_URL} is not reachable; start the test bed with `scripts/testbed.sh up`"
    try:
        client = Elasticsearch(SECURE_URL, ca_certs=str(SECURE_DIR / "ca.pem"),
                               basic_auth=("shipper-admin", password_file.read_text().strip()))
        client.cluster.health(wait_for_status="yellow", timeout="10s")
    except Exception as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the test bed is incomplete: {message} ({exc})", pytrace=False)
        pytest.skip(message)
    run_setup(client)
    yield client
    client.close()


# these tests count documents: only the container's log lines (its own short processes would be events too)
LOGS_ONLY = ("sources.docker_events.enabled=false", "sources.processes.enabled=false", "sources.files.enabled=false",
             "sources.stats.enabled=false")


@pytest.fixture
def writer_password(secure_es) -> str:
    return (SECURE_DIR / "writer-password").read_text().strip()


def test_ships_over_verified_tls_as_a_create_only_user(secure_es, writer_password, run_container, shippers):
    shipper = shippers(f"elasticsearch.hosts={SECURE_URL}", f"elasticsearch.ca_file={SECURE_DIR / 'ca.pem'}",
                       *LOGS_ONLY, f"elasticsearch.username={WRITER}",
                       env={"SHIPPER_ELASTICSEARCH__PASSWORD": writer_password}).start()
    container = run_container(["sh", "-c", "seq 1 300 | sed 's/^/tls-/'"], labels=shipper.labels)
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert wait_for_count(secure_es, shipper.index, 300, shipper=shipper) == 300
    assert shipper.stop() == 0

    # The writer writes, and can do nothing else.
    limited = Elasticsearch(SECURE_URL, ca_certs=str(SECURE_DIR / "ca.pem"), basic_auth=(WRITER, writer_password))
    with pytest.raises(AuthorizationException):
        limited.search(index=shipper.index)
    assert writer_password not in shipper.log_path.read_text()


def test_unverified_certificate_is_refused_and_spooled(secure_es, writer_password, run_container, shippers):
    shipper = shippers(f"elasticsearch.hosts={SECURE_URL}", *LOGS_ONLY, f"elasticsearch.username={WRITER}",
                       env={"SHIPPER_ELASTICSEARCH__PASSWORD": writer_password}).start()
    container = run_container(["sh", "-c", "seq 1 50"], labels=shipper.labels)
    assert container.wait(timeout=60)["StatusCode"] == 0
    shipper.wait_for_metric("shipper_spooled_events_total", 50, timeout=30)
    assert shipper.metric("shipper_spooled_events_total") == 50, shipper.log_tail()
    assert b"degraded: spooling" in shipper.health()
    assert count(secure_es, shipper.index) == 0
    assert "CERTIFICATE_VERIFY_FAILED" in shipper.log_path.read_text()


def test_ships_with_a_create_only_api_key_and_spools_when_it_is_revoked(secure_es, run_container, shippers):
    key = secure_es.security.create_api_key(name="shipper-test", role_descriptors={"shipper_writer": {
        "indices": [{"names": ["logs-shipper.*"], "privileges": ["create_doc", "auto_configure"]}]}})
    shipper = shippers(f"elasticsearch.hosts={SECURE_URL}", f"elasticsearch.ca_file={SECURE_DIR / 'ca.pem'}",
                       *LOGS_ONLY, env={"SHIPPER_ELASTICSEARCH__API_KEY": key["encoded"]}).start()
    try:
        container = run_container(["sh", "-c", "seq 1 200 | sed 's/^/key-/'"], labels=shipper.labels)
        assert container.wait(timeout=60)["StatusCode"] == 0
        assert wait_for_count(secure_es, shipper.index, 200, shipper=shipper) == 200

        # The key creates documents and can do nothing else: no delete, no search.
        limited = Elasticsearch(SECURE_URL, ca_certs=str(SECURE_DIR / "ca.pem"), api_key=key["encoded"])
        one = secure_es.search(index=shipper.index, size=1)["hits"]["hits"][0]
        with pytest.raises(AuthorizationException):
            limited.delete(index=one["_index"], id=one["_id"])
        bulk = limited.bulk(operations=[{"delete": {"_index": one["_index"], "_id": one["_id"]}}])
        assert bulk["items"][0]["delete"]["status"] == 403
        with pytest.raises(AuthorizationException):
            limited.search(index=shipper.index)
        assert secure_es.get(index=one["_index"], id=one["_id"])["found"]

        # Revoked: the shipper spools, and says why in one line.
        secure_es.security.invalidate_api_key(ids=[key["id"]])
        container = run_container(["sh", "-c", "seq 1 50 | sed 's/^/revoked-/'"], labels=shipper.labels)
        assert container.wait(timeout=60)["StatusCode"] == 0
        shipper.wait_for_metric("shipper_spooled_events_total", 50, timeout=60)
        assert shipper.metric("shipper_spooled_events_total") == 50, shipper.log_tail()
        assert b"degraded: spooling" in shipper.health()
        assert count(secure_es, shipper.index) == 200
        why = [line for line in shipper.log_path.read_text().splitlines() if "refused our credentials" in line]
        assert len(why) == 1, shipper.log_tail()
        assert "revoked" in why[0] and "401" in why[0]
        assert key["encoded"] not in shipper.log_path.read_text() and key["api_key"] not in shipper.log_path.read_text()
    finally:
        shipper.stop()


# `shipper setup` as the users it will meet: a create-only writer (403: it names the privilege and the
# role), a wrong password (401), and a user that may manage templates but has no index privilege at
# all, which proves setup learns what the cluster supports without writing to it.

SETUP_CONNECTION = ("--set", f"elasticsearch.hosts={SECURE_URL}", "--set", f"elasticsearch.ca_file={SECURE_DIR / 'ca.pem'}")


def _setup_as(user: str, password: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")}
    environment["SHIPPER_ELASTICSEARCH__PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "shipper", "setup", *SETUP_CONNECTION, "--set",
                           f"elasticsearch.username={user}"], capture_output=True, text=True, timeout=120,
                          env=environment)


def _one_line(result: subprocess.CompletedProcess, exit_code: int) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shipper: error: "), result.stderr
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    return lines[0]


def test_setup_as_a_create_only_user_names_the_privilege_and_the_role(writer_password):
    line = _one_line(_setup_as(WRITER, writer_password), 4)
    assert f"user {WRITER} lacks the cluster privilege manage_index_templates" in line
    assert "manage_ilm" in line and "writer role" in line


def test_setup_with_a_wrong_password(secure_es):
    line = _one_line(_setup_as(WRITER, "not-the-password"), 4)
    assert f"refused the credentials of user {WRITER} (401)" in line
    assert "elasticsearch.password" in line


@pytest.fixture
def templates_only_user(secure_es):
    """A native user whose role may manage templates and nothing else: no index privilege at all."""
    name = f"shipper-setup-{uuid.uuid4().hex[:8]}"
    password = uuid.uuid4().hex
    secure_es.security.put_role(name=name, cluster=["manage_index_templates"])
    secure_es.security.put_user(username=name, password=password, roles=[name])
    try:
        yield name, password
    finally:
        secure_es.security.delete_user(username=name)
        secure_es.security.delete_role(name=name)


def test_setup_writes_nothing_to_find_out_what_the_cluster_supports(secure_es, templates_only_user):
    result = _setup_as(*templates_only_user)
    assert result.returncode == 0, result.stderr  # creating a probe index would have been refused (403)
    assert "replaced   mapping type wildcard -> keyword" in result.stdout  # the zip lacks it: learned by simulation
    assert f"user {templates_only_user[0]} lacks the cluster privilege manage_ilm" in result.stdout
    indices = [i["index"] for i in secure_es.cat.indices(index="*", expand_wildcards="all", format="json")]
    assert not [i for i in indices if i.startswith("shipper-setup-probe")]
