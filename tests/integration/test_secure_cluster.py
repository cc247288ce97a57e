"""Against the bed's second node (TLS with our own CA, security on): verified TLS,
a user that may only create documents, and secrets that never reach the log.

API keys cannot be tested on this server: creating one needs the .security index,
whose mapping uses an analysis filter (pattern_capture) the integ-test zip lacks."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from elasticsearch import AuthorizationException, Elasticsearch

from shipper.es_setup import run_setup

from .shipper_proc import count, wait_for_count

SECURE_DIR = Path(os.environ.get("SHIPPER_TESTBED_DIR", "/var/lib/shipper-testbed")) / "es-secure"
SECURE_URL = "https://127.0.0.1:9201"
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
    shipper = shippers(f"elasticsearch.hosts={SECURE_URL}", *LOGS_ONLY, f"elasticsearch.username={WRITER}", env={"SHIPPER_ELASTICSEARCH__PASSWORD": writer_password}).start()
    container = run_container(["sh", "-c", "seq 1 50"], labels=shipper.labels)
    assert container.wait(timeout=60)["StatusCode"] == 0
    deadline = time.monotonic() + 30
    while shipper.metric("shipper_spooled_events_total") < 50 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert shipper.metric("shipper_spooled_events_total") == 50, shipper.log_tail()
    assert b"degraded: spooling" in shipper.health()
    assert count(secure_es, shipper.index) == 0
    assert "CERTIFICATE_VERIFY_FAILED" in shipper.log_path.read_text()
