"""What the Docker engine on this host exposes: its listeners and TLS, its socket, its defaults.

The facts come from where dockerd takes them: its command line (`/proc/<pid>/cmdline`),
its daemon.json, and `docker info` (authoritative for what it reports). They become
`shipper.engine.*` fields; the `host_config` Sigma rules judge them, so every check is
a rule with an id, a level, a docker-bench reference and a remediation.
"""

from __future__ import annotations

import grp
import json
import logging
import os
import pwd
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
DEFAULT_DATA_ROOT = "/var/lib/docker"
DEFAULT_CONFIG_FILE = "/etc/docker/daemon.json"

# dockerd flags that take no value (a following word is the next argument)
_BOOLEAN_FLAGS = {
    "tls", "tlsverify", "live-restore", "icc", "no-new-privileges", "experimental", "iptables", "ip-masq",
    "ip-forward", "userland-proxy", "selinux-enabled", "debug", "D", "rootless", "ipv6", "validate",
}
_SHORT_NAMES = {"H": "host", "G": "group", "g": "data-root", "graph": "data-root", "b": "bridge", "p": "pidfile",
                "D": "debug", "l": "log-level"}
# flags given several times; daemon.json spells them in the plural
_REPEATED = {"host": "hosts", "authorization-plugin": "authorization-plugins", "log-opt": "log-opts"}


def parse_dockerd_args(argv: list[str]) -> dict[str, Any]:
    """dockerd's command line as daemon.json would say it: {"hosts": [...], "tlsverify": True, ...}."""
    options: dict[str, Any] = {}
    args = list(argv[1:]) if argv and not argv[0].startswith("-") else list(argv)
    index = 0
    while index < len(args):
        word = args[index]
        index += 1
        if not word.startswith("-") or word in ("-", "--"):
            continue
        name, sep, value = word.lstrip("-").partition("=")
        if not sep and word.startswith("-") and not word.startswith("--") and len(name) > 1 and name[0] in _SHORT_NAMES:
            name, value, sep = name[0], name[1:], "="  # -Hunix:///... is -H unix:///...
        name = _SHORT_NAMES.get(name, name)
        if name in _BOOLEAN_FLAGS:
            options[name] = value.lower() != "false" if sep else True
            continue
        if not sep:
            if index >= len(args):
                options[name] = True
                continue
            value = args[index]
            index += 1
        if name in _REPEATED:
            plural = _REPEATED[name]
            if name == "log-opt":
                key, _, opt = value.partition("=")
                options.setdefault(plural, {})[key] = opt
            else:
                options.setdefault(plural, []).append(value)
        else:
            options[name] = value
    return options


def effective_settings(args: dict[str, Any], daemon_json: dict[str, Any]) -> dict[str, Any]:
    """Command line and daemon.json together (dockerd refuses a key set in both; the flag wins here)."""
    merged = dict(daemon_json)
    for key, value in args.items():
        if isinstance(value, list):
            merged[key] = list(merged.get(key) or []) + value
        elif isinstance(value, dict):
            merged[key] = {**(merged.get(key) or {}), **value}
        else:
            merged[key] = value
    return merged


@dataclass
class EngineFacts:
    """Everything the audit needs, gathered from the host (see `gather`)."""

    info: dict[str, Any]
    args: dict[str, Any] = field(default_factory=dict)
    daemon_json: dict[str, Any] = field(default_factory=dict)
    pid: int | None = None
    config_file: str = DEFAULT_CONFIG_FILE
    problems: list[str] = field(default_factory=list)  # what could not be read, said in the event


def find_dockerd(proc_root: str, data_root: str) -> tuple[int | None, list[str]]:
    """The dockerd whose data root is `data_root` (several engines may run on a host), and its argv."""
    candidates = []
    for entry in os.scandir(proc_root):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
            if comm != "dockerd":
                continue
            argv = Path(entry.path, "cmdline").read_bytes().rstrip(b"\0").decode(errors="replace").split("\0")
        except OSError:
            continue  # gone, or not ours to read
        candidates.append((int(entry.name), argv))
    for pid, argv in candidates:
        args = parse_dockerd_args(argv)
        root = args.get("data-root") or _read_json(args.get("config-file") or DEFAULT_CONFIG_FILE, []).get("data-root")
        if os.path.normpath(root or DEFAULT_DATA_ROOT) == os.path.normpath(data_root):
            return pid, argv
    return None, []


def gather(info: dict[str, Any], proc_root: str = "/proc", config_file: str | None = None) -> EngineFacts:
    """The facts about the engine that answered `info`: its process, its command line, its daemon.json."""
    facts = EngineFacts(info=info)
    pid, argv = find_dockerd(proc_root, info.get("DockerRootDir") or DEFAULT_DATA_ROOT)
    if pid is None:
        facts.problems.append("no dockerd process with this engine's data root is visible in " + proc_root)
    facts.pid = pid
    facts.args = parse_dockerd_args(argv)
    facts.config_file = config_file or facts.args.get("config-file") or DEFAULT_CONFIG_FILE
    facts.daemon_json = _read_json(facts.config_file, facts.problems)
    return facts


def _read_json(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        problems.append(f"cannot read {path}: {exc}")
        return {}
    return data if isinstance(data, dict) else {}


def _file_facts(path: str) -> dict[str, Any] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"path": path, "mode": f"{stat.S_IMODE(st.st_mode):04o}", "owner": _user(st.st_uid),
            "group": _group(st.st_gid), "uid": st.st_uid, "gid": st.st_gid}


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def engine_fields(facts: EngineFacts) -> dict[str, Any]:
    """The `shipper.engine` object the host_config rules judge."""
    info = facts.info
    settings = effective_settings(facts.args, facts.daemon_json)
    listeners = list(settings.get("hosts") or [DEFAULT_SOCKET])
    tcp = [h for h in listeners if h.startswith("tcp://")]
    tls_verify = bool(settings.get("tlsverify"))
    tls = tls_verify or bool(settings.get("tls"))
    security_options = " ".join(info.get("SecurityOptions") or [])
    authorization = list(((info.get("Plugins") or {}).get("Authorization")) or settings.get("authorization-plugins") or [])
    log_opts = settings.get("log-opts") or {}
    log_driver = info.get("LoggingDriver") or settings.get("log-driver") or "json-file"
    expected_group = settings.get("group") or "docker"
    engine: dict[str, Any] = {
        "id": info.get("ID"),
        "version": info.get("ServerVersion"),
        "pid": facts.pid,
        "config_file": facts.config_file,
        "listeners": listeners,
        "tcp_listeners": tcp,
        "tls": tls,
        "tls_verify": tls_verify,
        "tcp_without_tls": bool(tcp) and not tls,
        "tcp_tls_without_verify": bool(tcp) and tls and not tls_verify,
        "userns_remap": "name=userns" in security_options or bool(settings.get("userns-remap")),
        "rootless": "name=rootless" in security_options,
        "live_restore": bool(info.get("LiveRestoreEnabled", settings.get("live-restore", False))),
        # icc only matters where the default bridge exists (--bridge=none removes it)
        "icc_on_default_bridge": settings.get("bridge") != "none" and settings.get("icc", True) is not False,
        "no_new_privileges": bool(settings.get("no-new-privileges")),
        "log_driver": log_driver,
        # json-file and local keep everything unless max-size is set; other drivers send it away
        "log_size_limited": log_driver not in ("json-file", "local") or "max-size" in log_opts,
        "authorization_plugins": authorization,
        "authorization": bool(authorization),
        "experimental": bool(info.get("ExperimentalBuild", settings.get("experimental", False))),
    }
    sockets = [_socket_facts(h[len("unix://"):], expected_group) for h in listeners if h.startswith("unix://")]
    engine["sockets"] = [s for s in sockets if s]
    engine["socket_world_writable"] = any(s["world_writable"] for s in engine["sockets"])
    engine["socket_foreign_group_writable"] = any(s["foreign_group_writable"] for s in engine["sockets"])
    root = _file_facts(info.get("DockerRootDir") or settings.get("data-root") or DEFAULT_DATA_ROOT)
    if root is not None:
        mode = int(root["mode"], 8)
        root["too_open"] = root["uid"] != 0 or bool(mode & 0o022)
        engine["root_dir"] = root
    if facts.problems:
        engine["problems"] = facts.problems
    return engine


def _socket_facts(path: str, expected_group: str) -> dict[str, Any] | None:
    found = _file_facts(path)
    if found is None:
        return None
    mode = int(found["mode"], 8)
    found["world_writable"] = bool(mode & 0o002)
    # dockerd makes the socket root:<group> 0660; group-writable by any other group (root aside) hands it out
    found["foreign_group_writable"] = bool(mode & 0o020) and found["group"] not in (expected_group, "root")
    return found


def summary(engine: dict[str, Any]) -> str:
    sockets = ", ".join(f"{s['path']} {s['mode']} {s['owner']}:{s['group']}" for s in engine.get("sockets", []))
    return (f"Docker engine {engine.get('version') or ''} (pid {engine.get('pid') or '?'}) on {socket.gethostname()}: "
            f"listens on {', '.join(engine['listeners'])}; tls={engine['tls']} tlsverify={engine['tls_verify']}"
            + (f"; socket {sockets}" if sockets else ""))
