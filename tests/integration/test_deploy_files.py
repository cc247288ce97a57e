"""The deployment files: the compose file validates against the compose-spec schema and with
Debian's docker-compose, a broken copy is rejected, the Dockerfile passes hadolint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
COMPOSE = ROOT / "docker-compose.elk.yml"


def run(*command: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_compose_file_matches_the_compose_spec(tmp_path):
    done = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE))
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    mem_limit: 512m\n", "    mem_limit: [512m]\n"))
    assert run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(broken)).returncode != 0


@pytest.mark.parametrize("compose", ["docker-compose"])
def test_compose_file_passes_docker_compose_config(compose, tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    done = run(compose, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "-q")
    assert done.returncode == 0, done.stderr
    broken = tmp_path / "broken.yml"
    broken.write_text(COMPOSE.read_text().replace("depends_on:\n      certs:", "depends_on:\n      nothing-here:", 1))
    assert run(compose, "-f", str(broken), "--env-file", str(env_file), "config", "-q").returncode != 0


def test_dockerfile_passes_hadolint():
    done = run(str(BIN / "hadolint"), "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_socket_proxy_override_validates_and_takes_the_socket_away(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text((ROOT / ".env.example").read_text())
    proxy = ROOT / "docker-compose.socket-proxy.yml"
    done = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(proxy))
    assert done.returncode == 0, done.stdout + done.stderr
    done = run("docker-compose", "-f", str(COMPOSE), "-f", str(proxy), "--env-file", str(env_file), "config")
    assert done.returncode == 0, done.stderr
    shipper = yaml.safe_load(done.stdout)["services"]["shipper"]
    sources = {v.split(":")[1]: v.split(":")[0] for v in shipper["volumes"]}
    assert sources["/var/run/docker.sock"] == "/dev/null"
    assert shipper["environment"]["SHIPPER_DOCKER__URL"] == "tcp://docker-socket-proxy:2375"


def test_compose_mounts_no_more_of_the_docker_root_than_the_sources_read(tmp_path):
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    mounts = [v.split(":")[0] for v in services["shipper"]["volumes"]]
    assert "/var/lib/docker" not in mounts
    assert sorted(m for m in mounts if m.startswith("/var/lib/docker")) == [
        "/var/lib/docker/containers", "/var/lib/docker/overlay2"]
    assert services["logstash"]["environment"]["LS_JAVA_OPTS"].startswith("${LS_JAVA_OPTS:-")
    assert "SHIPPER_WEBHOOK_ENABLED=" in (ROOT / ".env.example").read_text()
