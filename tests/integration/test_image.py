"""The shipper's image builds from the repo's Dockerfile and, run as the compose file runs it,
ships a container's log into the real Elasticsearch.

No registry here: the base is the test bed's debootstrapped Debian with python3, and the
build (network `none`) installs from a wheelhouse downloaded on the host (cached).
The container uses network mode `host` only to reach Elasticsearch on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import docker
import pytest

from shipper.es_setup import run_setup

from ..conftest import _missing
from .shipper_proc import count, free_port

ROOT = Path(__file__).resolve().parents[2]
BASE = os.environ.get("SHIPPER_PYTHON_BASE", "shipper-testbed/python-base:bookworm")
WHEELS = Path(os.environ.get("SHIPPER_TESTBED_CACHE", "/var/cache/shipper-testbed")) / "wheels-cp311"


def wheelhouse(into: Path) -> None:
    """Wheels of the dependencies (and build requirements) for the base's CPython 3.11."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # the dependencies, and what pip needs to build the shipper from its source in the image
    requirements = project["project"]["dependencies"] + project["build-system"]["requires"]
    WHEELS.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "download", "--dest", str(WHEELS), "--only-binary=:all:", "--python-version", "3.11",
                    "--implementation", "cp", "--platform", "manylinux2014_x86_64", "--platform",
                    "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64", *requirements], check=True)
    shutil.copytree(WHEELS, into)


@pytest.fixture
def shipper_image(docker_client, tmp_path):
    try:
        docker_client.images.get(BASE)
    except docker.errors.ImageNotFound:
        _missing(f"the python base image {BASE}", "not imported")
    context = tmp_path / "context"
    context.mkdir()
    for name in ("Dockerfile", ".dockerignore", "pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, context / name)
    shutil.copytree(ROOT / "shipper", context / "shipper", ignore=shutil.ignore_patterns("__pycache__"))
    wheelhouse(context / "wheelhouse")
    run = uuid.uuid4().hex[:8]
    tag, build_stage = f"shipper-test/shipper:{run}", f"shipper-test/shipper-build:{run}"
    options = {"path": str(context), "network_mode": "none", "rm": True, "forcerm": True,
               "buildargs": {"BASE_IMAGE": BASE, "PIP_OPTIONS": "--no-index --find-links /src/wheelhouse"}}
    try:
        # The multi-stage build leaves its first stage as an untagged image (562 MB): build that stage
        # under a tag of its own first, so the final build reuses it from the cache and removing the
        # two tags removes every layer this test made.
        docker_client.images.build(tag=build_stage, target="build", **options)
        docker_client.images.build(tag=tag, **options)
        yield tag
    finally:
        for name in (tag, build_stage):
            try:
                docker_client.images.remove(name, force=True)
            except docker.errors.ImageNotFound:
                pass


def test_containerized_shipper_ships_into_elasticsearch(docker_client, es, run_container, shipper_image):
    run_setup(es)
    run_id = uuid.uuid4().hex[:10]
    namespace = f"t{run_id}"
    port = free_port()
    es_url = os.environ.get("ES_URL", "http://127.0.0.1:9200")
    shipper = run_container(
        ["run", "--log-format", "json"], image=shipper_image, network_mode="host", pid_mode="host",
        cap_add=["SYS_PTRACE"], init=False,
        volumes={"/var/run/docker.sock": {"bind": "/var/run/docker.sock", "mode": "ro"},
                 "/var/lib/docker/containers": {"bind": "/var/lib/docker/containers", "mode": "ro"},
                 "/var/lib/docker/overlay2": {"bind": "/var/lib/docker/overlay2", "mode": "ro"},
                 "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}},
        environment={"SHIPPER_ELASTICSEARCH__HOSTS": es_url, "SHIPPER_ELASTICSEARCH__NAMESPACE": namespace,
                     "SHIPPER_DOCKER__INCLUDE__LABELS": f"shipper.test.run={run_id}",
                     "SHIPPER_MONITOR__PORT": str(port), "SHIPPER_PIPELINE__FLUSH_INTERVAL": "0.2"},
    )
    writer = run_container(["sh", "-c", "i=0; while [ $i -lt 50 ]; do echo image line $i; i=$((i+1)); done; "
                                        "sleep 2; nc -l -p 4444 -e /bin/sh & sleep 60"],
                           labels={"shipper.test.run": run_id})
    index = f"logs-shipper.events-{namespace}"
    logs = {"bool": {"filter": [{"term": {"container.id": writer.id}},
                                {"term": {"event.dataset": "shipper.docker_logs"}}]}}
    netcat = {"bool": {"filter": [{"term": {"container.id": writer.id}}, {"term": {"process.name": "nc"}},
                                  {"term": {"event.kind": "alert"}}]}}
    deadline = time.monotonic() + 90
    while (count(es, index, logs) < 50 or count(es, index, netcat) < 1) and time.monotonic() < deadline:
        time.sleep(1)
    output = shipper.logs(tail=30).decode(errors="replace")
    assert count(es, index, logs) == 50, output
    assert count(es, index, netcat) >= 1, output  # /proc of the host's containers is readable from the image
    shipper.stop(timeout=30)
    shipper.reload()
    assert shipper.attrs["State"]["ExitCode"] == 0, shipper.logs(tail=30).decode(errors="replace")
