"""The engine audit: dockerd's command line and daemon.json read as dockerd reads them, and the
host_config rules judging the facts (each check fires on its misconfiguration and not on the fix)."""

from __future__ import annotations

import os
import socket

import pytest

from shipper.detect.engine import RulesEngine
from shipper.hostaudit import EngineFacts, effective_settings, engine_fields, parse_dockerd_args
from shipper.model import Event

INFO = {"ID": "X", "ServerVersion": "20.10", "DockerRootDir": "/nonexistent-root", "LiveRestoreEnabled": False,
        "ExperimentalBuild": False, "SecurityOptions": ["name=seccomp,profile=default"],
        "Plugins": {"Authorization": None}, "LoggingDriver": "json-file"}


@pytest.fixture(scope="module")
def engine():
    return RulesEngine.from_paths([])


def fired(engine, argv=(), daemon_json=None, info=None) -> set[str]:
    facts = EngineFacts(info={**INFO, **(info or {})}, args=parse_dockerd_args(["dockerd", *argv]),
                        daemon_json=daemon_json or {}, pid=4242)
    event = Event("id", "2026-11-29T00:00:00Z", "host_config", {"shipper": {"engine": engine_fields(facts)}})
    return {v.rule_name for v in engine.judge(event).verdicts}


def test_command_line_forms():
    args = parse_dockerd_args(["dockerd", "-H", "unix:///run/d.sock", "--host=tcp://0.0.0.0:2375", "-Hfd://",
                               "--tlsverify", "--icc=false", "--log-opt", "max-size=10m", "--data-root", "/srv/docker",
                               "--authorization-plugin=opa", "--live-restore", "--experimental=false", "-G", "ops"])
    assert args["hosts"] == ["unix:///run/d.sock", "tcp://0.0.0.0:2375", "fd://"]
    assert args["tlsverify"] is True and args["icc"] is False and args["live-restore"] is True
    assert args["experimental"] is False
    assert args["log-opts"] == {"max-size": "10m"} and args["authorization-plugins"] == ["opa"]
    assert args["data-root"] == "/srv/docker" and args["group"] == "ops"


def test_flags_and_daemon_json_add_up():
    settings = effective_settings(parse_dockerd_args(["dockerd", "-H", "tcp://127.0.0.1:2375"]),
                                  {"hosts": ["unix:///var/run/docker.sock"], "tls": True})
    assert settings["hosts"] == ["unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"] and settings["tls"] is True


def test_tcp_without_tls_is_critical_and_tls_without_verify_high(engine):
    plain = fired(engine, ["-H", "tcp://127.0.0.1:2375"])
    assert "Docker API published on TCP without TLS" in plain
    assert "Docker API on TCP with TLS but no client verification" not in plain
    tls_only = fired(engine, ["-H", "tcp://127.0.0.1:2376", "--tls"])
    assert "Docker API on TCP with TLS but no client verification" in tls_only
    assert "Docker API published on TCP without TLS" not in tls_only
    verified = fired(engine, [], {"hosts": ["tcp://0.0.0.0:2376"], "tlsverify": True})
    assert not {"Docker API published on TCP without TLS", "Docker API on TCP with TLS but no client verification"} & verified
    assert not any("TCP" in name for name in fired(engine))  # the default: the unix socket only


def test_daemon_defaults(engine):
    default = fired(engine)
    assert {"Docker engine without user namespace remapping", "Docker engine without live-restore",
            "Docker engine does not deny new privileges by default", "Docker engine keeps container logs without a size limit",
            "Docker engine without an authorization plugin", "Containers on the default bridge can talk to each other"} <= default
    hardened = fired(engine, ["--icc=false"],
                     {"live-restore": True, "no-new-privileges": True, "log-opts": {"max-size": "10m"},
                      "userns-remap": "default"},
                     {"LiveRestoreEnabled": True, "Plugins": {"Authorization": ["opa"]},
                      "SecurityOptions": ["name=seccomp,profile=default", "name=userns"]})
    assert hardened == set()
    assert "Containers on the default bridge can talk to each other" not in fired(engine, ["--bridge=none"])
    assert "Docker engine runs experimental features" in fired(engine, info={"ExperimentalBuild": True})
    assert "Docker engine keeps container logs without a size limit" not in fired(engine, info={"LoggingDriver": "syslog"})


@pytest.fixture
def unix_socket(tmp_path):
    path = str(tmp_path / "docker.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    yield path
    server.close()


def test_socket_permissions(engine, unix_socket):
    os.chmod(unix_socket, 0o660)
    argv = ["-H", f"unix://{unix_socket}"]
    group = os.stat(unix_socket).st_gid
    assert "Docker socket writable by every user" not in fired(engine, argv)
    os.chmod(unix_socket, 0o666)
    assert "Docker socket writable by every user" in fired(engine, argv)
    os.chmod(unix_socket, 0o660)
    # group-writable by its own group (named with --group) is how dockerd makes it; by another, a finding
    import grp
    name = grp.getgrgid(group).gr_name
    assert "Docker socket writable by a group other than docker's" not in fired(engine, argv + ["--group", name])
    if name != "root":
        assert "Docker socket writable by a group other than docker's" in fired(engine, argv + ["--group", "docker-admins"])


def test_root_dir_permissions(engine, tmp_path):
    root = tmp_path / "docker"
    root.mkdir(mode=0o710)
    os.chmod(root, 0o710)
    info = {"DockerRootDir": str(root)}
    too_open = "Docker root directory writable beyond root"
    assert (too_open in fired(engine, info=info)) == (os.stat(root).st_uid != 0)
    os.chmod(root, 0o777)
    assert too_open in fired(engine, info=info)


def test_each_audit_is_judged_whole_even_with_throttling_on():
    from shipper.detect.policy import Throttle

    engine = RulesEngine.from_paths([], throttle=Throttle(60))
    facts = EngineFacts(info=INFO, args=parse_dockerd_args(["dockerd", "-H", "tcp://127.0.0.1:2375"]), pid=4242)
    first, reload = (Event(str(n), "2026-11-29T00:00:00Z", "host_config", {"shipper": {"engine": engine_fields(facts)}})
                     for n in range(2))
    assert {v.rule_name for v in engine.judge(first).verdicts} == {v.rule_name for v in engine.judge(reload).verdicts}


def test_an_engine_whose_process_is_not_visible_is_judged_on_what_docker_info_says(engine):
    """A remote engine (docker.url=tcp://...), or /proc not the host's: no guess about listeners or flags."""
    facts = EngineFacts(info=INFO)
    fields = engine_fields(facts)
    assert "listeners" not in fields and "no_new_privileges" not in fields
    event = Event("id", "2026-11-29T00:00:00Z", "host_config", {"shipper": {"engine": fields}})
    assert {v.rule_name for v in engine.judge(event).verdicts} == {
        "Docker engine without user namespace remapping", "Docker engine without live-restore",
        "Docker engine without an authorization plugin"}


def test_gather_finds_this_hosts_dockerd(tmp_path):
    """With a fake /proc holding two dockerd: the one whose data root `docker info` names is chosen."""
    from shipper.hostaudit import gather

    for pid, argv in ((100, ["dockerd", "--data-root", "/srv/other"]),
                      (200, ["dockerd", "-H", "tcp://127.0.0.1:2375", "--config-file", str(tmp_path / "d.json")]),
                      (300, ["sleep", "1"])):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "comm").write_text(argv[0] + "\n")
        (tmp_path / str(pid) / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (tmp_path / "d.json").write_text('{"live-restore": true}')
    facts = gather({**INFO, "DockerRootDir": "/var/lib/docker"}, proc_root=str(tmp_path))
    assert facts.pid == 200 and facts.args["hosts"] == ["tcp://127.0.0.1:2375"]
    assert facts.daemon_json == {"live-restore": True} and facts.problems == []
