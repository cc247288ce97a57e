"""What the Docker engine on this host exposes: its listeners and TLS, its socket, its defaults.

The facts come from where dockerd takes them: its command line (`/proc/<pid>/cmdline`),
its daemon.json, and `docker info` (authoritative for what it reports). They become
`shipper.engine.*` fields; the `host_config` Sigma rules judge them, so every check is
a rule with an id, a level, a docker-bench reference and a remediation.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
        if not sep and not word.startswith("--") and len(name) > 1 and name[0] in _SHORT_NAMES:
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
    # where dockerd's own files are seen from here: /proc/<pid>/root when readable (the shipper may
    # run in a container with the host's /proc), "" when they are at their own paths
    root_prefix: str = ""
    problems: list[str] = field(default_factory=list)  # what could not be read, said in the event

    def host_path(self, path: str) -> str:
        return self.root_prefix + path


def find_dockerd(proc_root: str, data_root: str) -> tuple[int | None, list[str]]:
    """The dockerd whose data root is `data_root` (several engines may run on a host), and its argv.

    Its daemon.json is read as that process sees it, so this works from a container too."""
    candidates = []
    try:
        entries = list(os.scandir(proc_root))
    except OSError:
        return None, []
    for entry in entries:
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
        config = _seen_by(proc_root, pid) + (args.get("config-file") or DEFAULT_CONFIG_FILE)
        root = args.get("data-root") or _read_json(config, []).get("data-root")
        if os.path.normpath(root or DEFAULT_DATA_ROOT) == os.path.normpath(data_root):
            return pid, argv
    return None, []


def gather(info: dict[str, Any], proc_root: str = "/proc", config_file: str | None = None) -> EngineFacts:
    """The facts about the engine that answered `info`: its process, its command line, its daemon.json."""
    facts = EngineFacts(info=info)
    pid, argv = find_dockerd(proc_root, info.get("DockerRootDir") or DEFAULT_DATA_ROOT)
    if pid is None:
        facts.problems.append(f"no dockerd with this engine's data root is visible in {proc_root}: "
                              "its command line, listeners and socket are not audited")
    else:
        facts.root_prefix = _seen_by(proc_root, pid)
    facts.pid = pid
    facts.args = parse_dockerd_args(argv)
    facts.config_file = config_file or facts.args.get("config-file") or DEFAULT_CONFIG_FILE
    facts.daemon_json = _read_json(facts.config_file if config_file else facts.host_path(facts.config_file), facts.problems)
    return facts


def _seen_by(proc_root: str, pid: int | None) -> str:
    """The prefix under which process `pid` sees its files, or "" when that is not readable from here."""
    if pid is None:
        return ""
    root = f"{proc_root}/{pid}/root"
    return root if os.access(root + "/", os.R_OK | os.X_OK) else ""


def _read_json(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        problems.append(f"cannot read {path}: {exc}")
        return {}
    return data if isinstance(data, dict) else {}


def _file_facts(path: str, prefix: str = "") -> dict[str, Any] | None:
    """Mode and owners of `path`, named as the engine names it (without `prefix`)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"path": path[len(prefix):], "mode": f"{stat.S_IMODE(st.st_mode):04o}",
            "owner": _name(prefix, "passwd", st.st_uid), "group": _name(prefix, "group", st.st_gid),
            "uid": st.st_uid, "gid": st.st_gid}


def _name(prefix: str, database: str, number: int) -> str:
    """A user or group name as the engine's host names it: its /etc/passwd or /etc/group, not ours."""
    if not prefix:
        try:
            return pwd.getpwuid(number).pw_name if database == "passwd" else grp.getgrgid(number).gr_name
        except KeyError:
            return str(number)
    try:
        lines = Path(f"{prefix}/etc/{database}").read_text(errors="replace").splitlines()
    except OSError:
        return str(number)
    for line in lines:
        parts = line.split(":")
        if len(parts) > 2 and parts[2] == str(number):
            return parts[0]
    return str(number)


def engine_fields(facts: EngineFacts) -> dict[str, Any]:
    """The `shipper.engine` object the host_config rules judge."""
    info = facts.info
    settings = effective_settings(facts.args, facts.daemon_json)
    security_options = " ".join(info.get("SecurityOptions") or [])
    authorization = list(((info.get("Plugins") or {}).get("Authorization")) or settings.get("authorization-plugins") or [])
    log_driver = info.get("LoggingDriver") or settings.get("log-driver") or "json-file"
    # what `docker info` answers holds for any engine; the rest needs dockerd's own command line
    engine: dict[str, Any] = {
        "id": info.get("ID"),
        "version": info.get("ServerVersion"),
        "pid": facts.pid,
        "config_file": facts.config_file,
        "userns_remap": "name=userns" in security_options or bool(settings.get("userns-remap")),
        "rootless": "name=rootless" in security_options,
        "live_restore": bool(info.get("LiveRestoreEnabled", settings.get("live-restore", False))),
        "log_driver": log_driver,
        "authorization_plugins": authorization,
        "authorization": bool(authorization),
        "experimental": bool(info.get("ExperimentalBuild", settings.get("experimental", False))),
    }
    if log_driver not in ("json-file", "local"):
        engine["log_size_limited"] = True  # other drivers send the logs away
    if facts.pid is not None:  # unknown otherwise: no field, so no rule can judge it
        engine.update(_command_line_fields(facts, settings, log_driver))
    root = _file_facts(facts.host_path(info.get("DockerRootDir") or settings.get("data-root") or DEFAULT_DATA_ROOT),
                       facts.root_prefix)
    if root is not None:
        mode = int(root["mode"], 8)
        root["too_open"] = root["uid"] != 0 or bool(mode & 0o022)
        engine["root_dir"] = root
    if facts.problems:
        engine["problems"] = facts.problems
    return engine


def _command_line_fields(facts: EngineFacts, settings: dict[str, Any], log_driver: str) -> dict[str, Any]:
    listeners = list(settings.get("hosts") or [DEFAULT_SOCKET])
    tcp = [h for h in listeners if h.startswith("tcp://")]
    tls_verify = bool(settings.get("tlsverify"))
    tls = tls_verify or bool(settings.get("tls"))
    expected_group = settings.get("group") or "docker"
    found = [_socket_facts(facts, h[len("unix://"):], expected_group) for h in listeners if h.startswith("unix://")]
    sockets = [s for s in found if s]
    return {
        "listeners": listeners,
        "tcp_listeners": tcp,
        "tls": tls,
        "tls_verify": tls_verify,
        "tcp_without_tls": bool(tcp) and not tls,
        "tcp_tls_without_verify": bool(tcp) and tls and not tls_verify,
        # icc only matters where the default bridge exists (--bridge=none removes it)
        "icc_on_default_bridge": settings.get("bridge") != "none" and settings.get("icc", True) is not False,
        "no_new_privileges": bool(settings.get("no-new-privileges")),
        # json-file and local keep everything unless max-size is set
        "log_size_limited": log_driver not in ("json-file", "local") or "max-size" in (settings.get("log-opts") or {}),
        "sockets": sockets,
        "socket_world_writable": any(s["world_writable"] for s in sockets),
        "socket_foreign_group_writable": any(s["foreign_group_writable"] for s in sockets),
    }


def _socket_facts(facts: EngineFacts, path: str, expected_group: str) -> dict[str, Any] | None:
    found = _file_facts(facts.host_path(path), facts.root_prefix)
    if found is None:
        return None
    mode = int(found["mode"], 8)
    found["world_writable"] = bool(mode & 0o002)
    # dockerd makes the socket root:<group> 0660; group-writable by any other group (root aside) hands it out
    found["foreign_group_writable"] = bool(mode & 0o020) and found["group"] not in (expected_group, "root")
    return found


def summary(engine: dict[str, Any]) -> str:
    head = f"Docker engine {engine.get('version') or ''} (pid {engine.get('pid') or '?'}) on {socket.gethostname()}"
    if "listeners" not in engine:
        return f"{head}: its process is not visible from here; only `docker info` was audited"
    sockets = ", ".join(f"{s['path']} {s['mode']} {s['owner']}:{s['group']}" for s in engine["sockets"])
    return (f"{head}: listens on {', '.join(engine['listeners'])}; tls={engine['tls']} tlsverify={engine['tls_verify']}"
            + (f"; socket {sockets}" if sockets else ""))
