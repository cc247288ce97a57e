"""Every mistake a user can make on the command line is answered with one line on stderr
naming what is wrong, no traceback, and the documented exit code (shipper/errors.py).

Each case runs the real `shipper` command in a subprocess; none needs Docker or
Elasticsearch (the cases that do are in tests/integration/test_setup_errors.py).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from shipper.detect.engine import BUILTIN_RULES
from shipper.detect.sigma import rule_files

RULE = """\
title: Test rule for lint
id: 5d7d3c1e-2a5f-4a53-9d55-0a1f8c7b6e01
status: experimental
description: a rule of the user's own
logsource:
  category: process_creation
  product: linux
detection:
  selection:
    process.name: lint-test
  condition: selection
level: low
"""


def shipper(*args: str, without_dac_override: bool = False) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("SHIPPER_")}
    environment["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    command = [sys.executable, "-m", "shipper", *args]
    if without_dac_override:
        command = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, env=environment, cwd="/")


def assert_one_line_error(result: subprocess.CompletedProcess, exit_code: int, *expected: str) -> str:
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("shipper: error: "), lines[0]
    assert result.returncode == exit_code, (result.returncode, result.stderr)
    for text in expected:
        assert text in lines[0], lines[0]
    return lines[0]


def test_rules_lint_of_a_missing_path(tmp_path):
    missing = tmp_path / "nonexistent"
    assert_one_line_error(shipper("rules", "lint", str(missing)), 2, str(missing), "no such file or directory")


def test_rules_test_with_a_missing_events_file(tmp_path):
    rule = tmp_path / "rule.yml"
    rule.write_text(RULE)
    events = tmp_path / "events.jsonl"
    assert_one_line_error(shipper("rules", "test", str(rule), "--events", str(events)), 2, str(events),
                          "no such file or directory")


def test_rules_test_with_a_missing_rule(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_text('{"process": {"name": "lint-test"}}\n')
    assert_one_line_error(shipper("rules", "test", str(tmp_path / "nope.yml"), "--events", str(events)), 2,
                          "nope.yml", "no such file or directory")


def test_rules_test_with_a_line_that_is_not_json(tmp_path):
    rule = tmp_path / "rule.yml"
    rule.write_text(RULE)
    events = tmp_path / "events.jsonl"
    events.write_text('{"process": {"name": "lint-test"}}\n{not json\n')
    assert_one_line_error(shipper("rules", "test", str(rule), "--events", str(events)), 2, f"{events}:2", "not JSON")


def test_rules_lint_without_arguments_lints_what_run_loads(tmp_path):
    (tmp_path / "mine.yml").write_text(RULE)
    builtin = len(rule_files([BUILTIN_RULES]))
    both = shipper("rules", "lint", "--set", f"detection.rules={tmp_path}")
    assert both.returncode == 0, both.stderr
    assert f"{builtin + 1} rules loaded" in both.stdout
    own = shipper("rules", "lint", "--set", f"detection.rules={tmp_path}", "--set", "detection.builtin_rules=false")
    assert own.returncode == 0, own.stderr
    assert "1 rule loaded" in own.stdout


@pytest.mark.parametrize("directory, why", [
    ("/proc/nope", "cannot create or write it"),
    ("/etc/hostname", "exists and is not a directory"),
    ("/proc", "is readable by others"),  # never narrowed: it is not the shipper's own
])
def test_run_with_an_unusable_state_directory(directory, why):
    assert_one_line_error(shipper("run", "--set", f"state.directory={directory}"), 2,
                          f"state.directory {directory}", why)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv (util-linux)")
def test_run_with_a_state_directory_it_may_not_write():
    parent = Path(tempfile.mkdtemp(prefix="shipper-unwritable-"))
    try:  # another user's directory, and root without the capability to override file permissions
        os.chown(parent, 65534, 65534)
        parent.chmod(0o755)
        target = parent / "state"
        assert_one_line_error(shipper("run", "--set", f"state.directory={target}", without_dac_override=True), 2,
                              f"state.directory {target}", "Permission denied")
    finally:
        parent.rmdir()


def test_run_with_a_missing_rules_directory(tmp_path):
    missing = tmp_path / "my-rules"
    assert_one_line_error(shipper("run", "--set", f"state.directory={tmp_path / 'state'}",
                                  "--set", f"detection.rules={missing}"), 2, "detection.rules", str(missing))


def test_run_with_a_missing_ca_file(tmp_path):
    assert_one_line_error(shipper("run", "--set", "elasticsearch.hosts=https://127.0.0.1:9",
                                  "--set", f"elasticsearch.ca_file={tmp_path / 'ca.pem'}"), 2, "elasticsearch.ca_file")


def test_a_ca_file_with_plain_http_hosts(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert_one_line_error(shipper("setup", "--set", "elasticsearch.hosts=http://127.0.0.1:9",
                                  "--set", f"elasticsearch.ca_file={ca}"), 2, "elasticsearch.ca_file", "http://")


def test_a_config_file_that_does_not_exist(tmp_path):
    assert_one_line_error(shipper("run", "-c", str(tmp_path / "shipper.yml")), 2, "shipper.yml", "cannot read")


def test_a_config_file_that_is_not_yaml(tmp_path):
    path = tmp_path / "shipper.yml"
    path.write_text("elasticsearch:\n  hosts: [http://x\n  namespace: a\n")
    assert_one_line_error(shipper("config", "check", str(path)), 2, str(path), "not valid YAML")


@pytest.mark.parametrize("flag, expected", [
    ("elasticsearch", "expected section.key=value"),
    ("pipeline.batch_max_docs=many", "pipeline.batch_max_docs"),
    ("no.such_key=1", "unknown key"),
])
def test_a_bad_set_flag(flag, expected):
    assert_one_line_error(shipper("config", "check", "--set", flag), 2, expected)


def test_an_unreachable_docker_engine(tmp_path):
    assert_one_line_error(shipper("run", "--set", f"state.directory={tmp_path / 'state'}", "--set", "monitor.port=0",
                                  "--set", "docker.url=unix:///nonexistent/docker.sock"), 3, "Docker engine")


def test_run_with_a_monitor_port_that_is_taken(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert_one_line_error(shipper("run", "--set", f"state.directory={tmp_path / 'state'}", "--set",
                                      f"monitor.port={port}", "--set", "docker.include.labels=shipper.test.none=1",
                                      "--set", "elasticsearch.hosts=http://127.0.0.1:9", "--set",
                                      "sources.processes.enabled=false", "--set", "sources.files.enabled=false"),
                  2, f"monitor 127.0.0.1:{port}", "monitor.port")


def test_an_unreachable_elasticsearch():
    assert_one_line_error(shipper("setup", "--set", "elasticsearch.hosts=http://127.0.0.1:9",
                                  "--set", "elasticsearch.request_timeout=2"), 3, "http://127.0.0.1:9")


def test_status_of_a_shipper_that_is_not_running():
    assert_one_line_error(shipper("status", "--set", "monitor.port=9"), 3, "no shipper answers")


def test_kibana_generate_into_a_directory_it_cannot_make():
    assert_one_line_error(shipper("kibana", "generate", "--out", "/proc/nope"), 2, "/proc/nope")


def test_setup_with_a_kibana_url_that_is_not_one():
    assert_one_line_error(shipper("setup", "--kibana", "kibana:5601"), 2, "--kibana kibana:5601", "http://")
