"""`shipper setup` against the bed's secure node, as the users it will meet: a
create-only writer (403: it names the privilege and the role), a wrong password
(401), and a user that may manage templates but has no index privilege at all,
which proves setup learns what the cluster supports without writing to it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from .test_secure_cluster import SECURE_DIR, SECURE_URL, WRITER, secure_es, writer_password  # noqa: F401 (fixtures)

CONNECTION = ("--set", f"elasticsearch.hosts={SECURE_URL}", "--set", f"elasticsearch.ca_file={SECURE_DIR / 'ca.pem'}")


def setup_as(user: str, password: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")}
    environment["SHIPPER_ELASTICSEARCH__PASSWORD"] = password
    return subprocess.run([sys.executable, "-m", "shipper", "setup", *CONNECTION, "--set",
                           f"elasticsearch.username={user}"], capture_output=True, text=True, timeout=120,
                          env=environment)


def one_line(result: subprocess.CompletedProcess, exit_code: int) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("shipper: error: "), result.stderr
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    return lines[0]


def test_setup_as_a_create_only_user_names_the_privilege_and_the_role(writer_password):
    line = one_line(setup_as(WRITER, writer_password), 4)
    assert f"user {WRITER} lacks the cluster privilege manage_index_templates" in line
    assert "manage_ilm" in line and "writer role" in line


def test_setup_with_a_wrong_password(secure_es):
    line = one_line(setup_as(WRITER, "not-the-password"), 4)
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
    result = setup_as(*templates_only_user)
    assert result.returncode == 0, result.stderr  # creating a probe index would have been refused (403)
    assert "replaced   mapping type wildcard -> keyword" in result.stdout  # the zip lacks it: learned by simulation
    assert f"user {templates_only_user[0]} lacks the cluster privilege manage_ilm" in result.stdout
    indices = [i["index"] for i in secure_es.cat.indices(index="*", expand_wildcards="all", format="json")]
    assert not [i for i in indices if i.startswith("shipper-setup-probe")]
