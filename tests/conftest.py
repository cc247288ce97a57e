"""Fixtures for the test bed: a real Docker engine and a real Elasticsearch.

Tests under tests/integration/ are marked `integration`. When the bed is missing
they skip with a reason that says how to start it, except under CI=true, where
they fail: a green CI must mean the integration tests ran.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import docker
import pytest
from docker.types import LogConfig
from elasticsearch import Elasticsearch

TEST_IMAGE = os.environ.get("SHIPPER_TEST_IMAGE", "shipper-testbed/busybox:1")
TEST_LABEL = "shipper.test"
HOW_TO_START = "start the test bed with `sudo scripts/testbed.sh up`"
ALLOWED_NETWORK_MODES = {"none", "host"}


def pytest_collection_modifyitems(items):
    integration_dirs = {Path(__file__).parent / "integration", Path(__file__).parent / "scenarios"}
    for item in items:
        if integration_dirs & set(Path(item.fspath).parents):
            item.add_marker(pytest.mark.integration)


def _missing(what: str, detail: str) -> None:
    message = f"{what} is not reachable ({detail}); {HOW_TO_START}"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the test bed is incomplete: {message}", pytrace=False)
    pytest.skip(message)


def es_url() -> str:
    return os.environ.get("ES_URL", "http://127.0.0.1:9200")


def es_client_kwargs() -> dict:
    kwargs: dict = {"request_timeout": 30}
    if os.environ.get("ES_API_KEY"):
        kwargs["api_key"] = os.environ["ES_API_KEY"]
    elif os.environ.get("ES_USERNAME"):
        kwargs["basic_auth"] = (os.environ["ES_USERNAME"], os.environ.get("ES_PASSWORD", ""))
    if os.environ.get("ES_CA_FILE"):
        kwargs["ca_certs"] = os.environ["ES_CA_FILE"]
    return kwargs


@pytest.fixture(scope="session")
def docker_client():
    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:  # any failure here means "no engine"
        _missing("the Docker engine", f"{type(exc).__name__}: {exc}")
    yield client
    _remove_labelled(client)
    client.close()


def _remove_labelled(client) -> None:
    """Remove every container a test made, even ones a crashed test left behind."""
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)


@pytest.fixture(scope="session")
def es():
    url = es_url()
    client = Elasticsearch(url, **es_client_kwargs())
    try:
        # a node that has just restarted (the outage tests restart it) recovers its shards first
        health = client.options(request_timeout=150).cluster.health(wait_for_status="yellow", timeout="120s")
    except Exception as exc:
        _missing(f"Elasticsearch at {url}", f"{type(exc).__name__}: {exc}")
    if health["status"] not in ("green", "yellow"):
        _missing(f"Elasticsearch at {url}", f"cluster status {health['status']}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def test_image(docker_client) -> str:
    try:
        docker_client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        _missing(f"the test image {TEST_IMAGE}", "not built")
    return TEST_IMAGE


@pytest.fixture
def run_container(docker_client, test_image):
    """Start a container from the test image; always removed afterwards.

    Network mode is `none` unless a test asks for `host` (to reach our own
    services on 127.0.0.1); json-file logs are capped at 3 x 10 MB.
    """
    made = []

    def run(command, *, image: str = test_image, **kwargs):
        kwargs.setdefault("network_mode", "none")
        if kwargs["network_mode"] not in ALLOWED_NETWORK_MODES:
            raise ValueError(f"test containers may only use network mode none or host, not {kwargs['network_mode']}")
        kwargs.setdefault("log_config", LogConfig(type="json-file", config={"max-size": "10m", "max-file": "3"}))
        kwargs.setdefault("init", True)
        kwargs["labels"] = {**kwargs.get("labels", {}), TEST_LABEL: "1"}
        kwargs.setdefault("name", f"shipper-test-{uuid.uuid4().hex[:10]}")
        container = docker_client.containers.run(image, command, detach=True, **kwargs)
        made.append(container)
        return container

    yield run
    for container in made:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture
def es_index(es):
    """A fresh index name, deleted after the test."""
    name = f"shipper-test-{uuid.uuid4().hex[:12]}"
    yield name
    es.options(ignore_status=404).indices.delete(index=name)
