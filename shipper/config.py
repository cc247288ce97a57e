"""Typed configuration: a YAML file, then `SHIPPER_<SECTION>__<KEY>` environment
variables, then `--set section.key=value` flags, each layer overriding the one before.

Every problem is collected and reported together, each with where it came from
(`file:line`, the environment variable, or the flag), so one run of
`shipper config check` shows everything that needs fixing.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError, Problem

ENV_PREFIX = "SHIPPER_"
ENV_LEVEL_SEPARATOR = "__"
MASK = "********"


def _secret(default: Any = None, doc: str = "") -> Any:
    return field(default=default, metadata={"secret": True, "doc": doc})


def _check(fn: Callable[[Any], str | None], default: Any = None, *, factory: Callable[[], Any] | None = None) -> Any:
    if factory is not None:
        return field(default_factory=factory, metadata={"check": fn})
    return field(default=default, metadata={"check": fn})


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _hosts(values: list[str]) -> str | None:
    if not values:
        return "needs at least one URL"
    for url in values:
        if not url.startswith(("http://", "https://")):
            return f"{url!r} is not an http:// or https:// URL"
    return None


def _readable_file(value: str | None) -> str | None:
    if value is None or os.path.isfile(value):
        return None
    return f"{value!r} is not a file{' (no such file)' if not os.path.exists(value) else ''}"


def _existing_paths(values: list[str]) -> str | None:
    missing = [value for value in values if not os.path.exists(value)]
    return f"no such file or directory: {', '.join(missing)}" if missing else None


def _namespace(value: str) -> str | None:
    # Data stream names are lowercase and may not contain '-' in the namespace part.
    bad = set(value) & set('-\\/*?"<>| ,#:')
    if not value or bad or value != value.lower():
        return f"{value!r} must be lowercase with no '-', spaces or any of \\/*?\"<>|,#:"
    return None


@dataclass(frozen=True)
class ElasticsearchConfig:
    hosts: list[str] = _check(_hosts, factory=lambda: ["http://127.0.0.1:9200"])
    username: str | None = None
    password: str | None = _secret()
    api_key: str | None = _secret()
    ca_file: str | None = _check(_readable_file)
    verify_certs: bool = True
    request_timeout: float = _check(_positive, 30.0)
    namespace: str = _check(_namespace, "default")


@dataclass(frozen=True)
class ContainerMatch:
    names: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class LogstashConfig:
    # The `http` input of logstash/pipeline/shipper.conf; used when output: logstash.
    url: str = "http://127.0.0.1:8080"
    username: str | None = None
    password: str | None = _secret()
    ca_file: str | None = _check(_readable_file)
    verify_certs: bool = True
    request_timeout: float = _check(_positive, 30.0)


def _severity(value: str) -> str | None:
    names = ("informational", "low", "medium", "high", "critical")
    return None if value in names else f"must be one of {', '.join(names)}"


@dataclass(frozen=True)
class WebhookConfig:
    enabled: bool = False
    url: str | None = _secret(doc="the incoming-webhook URL; it is the credential, never logged")
    min_severity: str = _check(_severity, "high")
    throttle_seconds: float = 300.0  # one message per (rule, container) per window
    # Fields: {id} {rule_id} {container_id} {timestamp}, e.g. a Kibana Discover URL.
    link_template: str = ""
    max_retries: int = _check(lambda v: None if v >= 0 else "must be 0 or more", 5)
    request_timeout: float = _check(_positive, 10.0)
    queue_size: int = _check(_positive, 1000)


@dataclass(frozen=True)
class DockerConfig:
    # None: DOCKER_HOST if set, else the local socket.
    url: str | None = None
    root_dir: str = "/var/lib/docker"
    # which containers every source watches (logs, processes, files, stats)
    include: ContainerMatch = field(default_factory=ContainerMatch)
    exclude: ContainerMatch = field(default_factory=ContainerMatch)


@dataclass(frozen=True)
class DockerLogsConfig:
    enabled: bool = True
    mode: Literal["auto", "file", "api"] = "auto"
    include: ContainerMatch = field(default_factory=ContainerMatch)
    exclude: ContainerMatch = field(default_factory=ContainerMatch)
    max_message_length: int = _check(_positive, 1 << 20)
    start_at: Literal["beginning", "end"] = "beginning"
    poll_interval: float = _check(_positive, 0.05)


@dataclass(frozen=True)
class DockerEventsConfig:
    enabled: bool = True


@dataclass(frozen=True)
class ProcessesConfig:
    enabled: bool = True
    interval: float = _check(_positive, 0.5)  # seconds between samples of each container's processes
    network: bool = True  # also read each container's /proc/<pid>/net/tcp{,6} and net/packet
    realtime: bool = True  # execs as they happen from the kernel's process-events connector (root), else sampling only
    audit: bool = False  # install audit execve/packet-socket rules (tagged with the shipper's key, removed at exit)
    proc_root: str = "/proc"  # the host's /proc (mounted elsewhere when the shipper runs in a container)
    cgroup_root: str = "/sys/fs/cgroup"


@dataclass(frozen=True)
class FilesConfig:
    enabled: bool = True
    host_paths: list[str] = field(default_factory=list)  # host directories watched besides containers
    exclude: list[str] = field(default_factory=list)  # glob patterns on the in-container path
    hash_max_bytes: int = _check(_positive, 1 << 20)  # sha256 of executables, and of files up to this size
    max_watches: int = _check(_positive, 50_000)  # inotify watches this shipper may use
    catch_up_seconds: float = 10.0  # report files written this soon after a container started, before its watch
    startup_seconds: float = 5.0  # events this soon after a container started are marked shipper.file.during_startup
    watch_dev: bool = True  # also watch each container's /dev (tmpfs, /dev/shm) through /proc/<pid>/root/dev


@dataclass(frozen=True)
class StatsConfig:
    enabled: bool = True
    interval: float = _check(_positive, 10.0)


@dataclass(frozen=True)
class HostConfigConfig:
    enabled: bool = True
    interval: float = _check(_positive, 3600.0)  # seconds between audits of the engine (and on every reload)
    daemon_config: str | None = None  # daemon.json; None: dockerd's --config-file, else /etc/docker/daemon.json
    proc_root: str = "/proc"  # the host's /proc, where dockerd's command line is read


@dataclass(frozen=True)
class VulnerabilitiesConfig:
    directory: str | None = None  # where `trivy image -f json` reports are dropped; None: off
    rescan_interval: float = _check(_positive, 300.0)  # read every report again, to join newly started containers


@dataclass(frozen=True)
class SourcesConfig:
    docker_logs: DockerLogsConfig = field(default_factory=DockerLogsConfig)
    docker_events: DockerEventsConfig = field(default_factory=DockerEventsConfig)
    processes: ProcessesConfig = field(default_factory=ProcessesConfig)
    files: FilesConfig = field(default_factory=FilesConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    host_config: HostConfigConfig = field(default_factory=HostConfigConfig)
    vulnerabilities: VulnerabilitiesConfig = field(default_factory=VulnerabilitiesConfig)


@dataclass(frozen=True)
class ExceptionConfig:
    """An allowlist entry: verdicts of `rules` (ids; empty = every rule) are dropped for
    events matching every matcher given. Globs for strings, `key=value` for labels."""

    rules: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    containers: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # process name or executable
    paths: list[str] = field(default_factory=list)  # file.path
    reason: str = ""


@dataclass(frozen=True)
class PortScanConfig:
    enabled: bool = True
    window: float = _check(_positive, 60.0)
    distinct_ports: int = _check(_positive, 15)
    distinct_hosts: int = _check(_positive, 10)
    syn_sent: int = _check(_positive, 20)


@dataclass(frozen=True)
class MiningConfig:
    enabled: bool = True
    cpu_cores: float = _check(_positive, 0.8)  # CPU in cores that always counts as "high"
    cpu_share: float = _check(lambda v: None if 0 < v <= 1 else "must be above 0 and at most 1", 0.6)  # or this
    # share of what the container could get (its limit, or its use plus the host's idle CPU) ...
    min_cores: float = _check(_positive, 0.25)  # ... from this many cores up
    sustained_samples: int = _check(_positive, 3)  # consecutive high stats samples
    signal_memory: float = _check(_positive, 600.0)  # how long a miner signal is remembered


@dataclass(frozen=True)
class AnomalyConfig:
    enabled: bool = True
    warmup_samples: int = _check(_positive, 60)  # stats samples of an image before its model is trained
    threshold: float = _check(lambda v: None if 0 < v < 1 else "must be between 0 and 1", 0.55)
    consecutive: int = _check(_positive, 2)  # samples in a row at or above the threshold before an alert
    trees: int = _check(_positive, 100)


@dataclass(frozen=True)
class ImagesConfig:
    enabled: bool = True  # provenance facts on container starts and image pulls, for the image_config rules
    allowed_registries: list[str] = field(default_factory=list)  # e.g. [registry.example.com]; empty: any
    max_age_days: float = _check(_positive, 365.0)  # an image built longer ago than this is outdated


@dataclass(frozen=True)
class DetectionConfig:
    enabled: bool = True
    builtin_rules: bool = True
    rules: list[str] = _check(_existing_paths, factory=list)  # files or directories of Sigma rules
    exceptions: list[ExceptionConfig] = field(default_factory=list)
    throttle_seconds: float = 60.0  # repeats of a (rule, container) inside this window are counted, not alerted; 0 = off
    port_scan: PortScanConfig = field(default_factory=PortScanConfig)
    mining: MiningConfig = field(default_factory=MiningConfig)
    anomaly: AnomalyConfig = field(default_factory=AnomalyConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)


@dataclass(frozen=True)
class PipelineConfig:
    batch_max_docs: int = _check(_positive, 2000)
    batch_max_bytes: int = _check(_positive, 8 << 20)
    flush_interval: float = _check(_positive, 1.0)
    queue_batches: int = _check(_positive, 4)
    max_retries: int = _check(lambda v: None if v >= 0 else "must be 0 or more", 5)
    # seconds after a start during which batches are looked up by id before they are sent
    resend_check_seconds: float = _check(lambda v: None if v >= 0 else "must be 0 or more", 60.0)


@dataclass(frozen=True)
class StateConfig:
    directory: str = "/var/lib/shipper"
    spool_max_bytes: int = _check(_positive, 1 << 30)


@dataclass(frozen=True)
class MonitorConfig:
    host: str = "127.0.0.1"
    port: int = _check(lambda v: None if 0 <= v < 65536 else "must be 0 (off) to 65535", 9464)
    status_interval: float = _check(_positive, 30.0)


@dataclass(frozen=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "text"] = "auto"


@dataclass(frozen=True)
class Config:
    # Where events go: Elasticsearch directly, or Logstash's http input in front of it.
    output: Literal["elasticsearch", "logstash"] = "elasticsearch"
    elasticsearch: ElasticsearchConfig = field(default_factory=ElasticsearchConfig)
    logstash: LogstashConfig = field(default_factory=LogstashConfig)
    webhook: WebhookConfig = field(default_factory=WebhookConfig)
    docker: DockerConfig = field(default_factory=DockerConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    state: StateConfig = field(default_factory=StateConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    log: LogConfig = field(default_factory=LogConfig)


# ---------------------------------------------------------------- loading


@dataclass
class _Value:
    """A raw value with the place it came from."""

    value: Any
    where: str


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: list[str] | None = None,
) -> Config:
    """Build the effective `Config`; raise `ConfigError` listing every problem."""
    problems: list[Problem] = []
    layered: dict[str, Any] = {}
    if path is not None:
        _merge(layered, _read_yaml(Path(path), problems))
    _merge(layered, _from_env(os.environ if env is None else env))
    _merge(layered, _from_flags(overrides or [], problems))
    config: Config = _build(Config, layered, "", problems)
    if config.webhook.enabled and not config.webhook.url:
        where = (layered.get("webhook") or {}).get("__where__", "webhook")
        problems.append(Problem(where, "webhook.url", "is needed when webhook.enabled is true"))
    es = config.elasticsearch
    plain = [url for url in es.hosts if url.startswith("http://")]
    if plain and es.ca_file:
        where = (layered.get("elasticsearch") or {}).get("ca_file")
        problems.append(Problem(where.where if isinstance(where, _Value) else "elasticsearch", "elasticsearch.ca_file",
                                f"is for TLS but {plain[0]} is plain http://; use https:// hosts or drop ca_file"))
    if problems:
        raise ConfigError(problems)
    return config


def _merge(into: dict[str, Any], layer: dict[str, Any]) -> None:
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def _read_yaml(path: Path, problems: list[Problem]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(path), "", f"cannot read: {exc.strerror}"))
        return {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problems.append(Problem(where, "", f"not valid YAML: {getattr(exc, 'problem', exc)}"))
        return {}
    if node is None:
        return {}
    tree = _located(node, path)
    if not isinstance(tree, dict):
        problems.append(Problem(f"{path}:1", "", "the top level must be a mapping of sections"))
        return {}
    return tree


def _located(node: yaml.Node, path: Path, where: str | None = None) -> Any:
    """Turn a composed YAML node into nested dicts whose leaves are `_Value`s.

    Each mapping carries `__where__` (the line of its key) and each leaf the line
    of its key, so a problem points at the line the user has to edit.
    """
    where = where or f"{path}:{node.start_mark.line + 1}"
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {"__where__": where}
        for key_node, value_node in node.value:
            key = str(_plain(key_node))
            out[key] = _located(value_node, path, f"{path}:{key_node.start_mark.line + 1}")
        return out
    return _Value(_plain(node), where)


def _plain(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node))


def _from_env(env: Mapping[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or ENV_LEVEL_SEPARATOR not in name:
            continue
        dotted = name[len(ENV_PREFIX):].lower().replace(ENV_LEVEL_SEPARATOR, ".")
        _put(tree, dotted, _scalar(raw, f"env {name}"))
    return tree


def _from_flags(flags: list[str], problems: list[Problem]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for flag in flags:
        dotted, sep, raw = flag.partition("=")
        if not sep or not dotted:
            problems.append(Problem(f"--set {flag}", "", "expected section.key=value"))
            continue
        _put(tree, dotted.strip(), _scalar(raw, f"--set {dotted.strip()}"))
    return tree


def _scalar(raw: str, where: str) -> _Value:
    try:
        return _Value(yaml.safe_load(raw) if raw.strip() else None, where)
    except yaml.YAMLError:
        return _Value(raw, where)


def _put(tree: dict[str, Any], dotted: str, value: _Value) -> None:
    *parents, leaf = dotted.split(".")
    for part in parents:
        tree = tree.setdefault(part, {"__where__": value.where})
    tree[leaf] = value


def _build(cls: type, raw: dict[str, Any], prefix: str, problems: list[Problem]) -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, item in raw.items():
        if key == "__where__":
            continue
        dotted = f"{prefix}{key}"
        where = item.where if isinstance(item, _Value) else item.get("__where__", "?")
        if key not in fields:
            known = ", ".join(sorted(fields))
            problems.append(Problem(where, dotted, f"unknown key (known here: {known})"))
            continue
        kind = hints[key]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            if not isinstance(item, dict):
                problems.append(Problem(where, dotted, "must be a mapping"))
                continue
            kwargs[key] = _build(kind, item, f"{dotted}.", problems)
            continue
        if isinstance(item, dict):
            problems.append(Problem(where, dotted, f"must be {_describe(kind)}, not a mapping"))
            continue
        value, error = _coerce(item.value, kind)
        if error is None:
            check = fields[key].metadata.get("check")
            error = check(value) if check else None
        if error is not None:
            problems.append(Problem(item.where, dotted, error))
            continue
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:  # only reachable if a problem was already recorded
        problems.append(Problem("?", prefix.rstrip("."), str(exc)))
        return cls()


def _coerce(value: Any, kind: Any) -> tuple[Any, str | None]:
    """Check `value` against the annotation `kind`; return (value, error message)."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None, None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0])
    if origin is Literal:
        if value in args:
            return value, None
        return value, f"must be one of {', '.join(map(str, args))}, not {value!r}"
    if origin is list and isinstance(args[0], type) and dataclasses.is_dataclass(args[0]):
        if not isinstance(value, list):
            return value, f"must be a list of mappings, not {_typename(value)}"
        items = []
        for index, element in enumerate(value):
            item, error = _coerce_mapping(element, args[0])
            if error:
                return value, f"item {index + 1}: {error}"
            items.append(item)
        return items, None
    if origin is list:
        if isinstance(value, str):  # env/flags: comma-separated lists
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list):
            return value, f"must be {_describe(kind)}, not {_typename(value)}"
        for element in value:
            _, error = _coerce(element, args[0])
            if error:
                return value, f"every item {error.removeprefix('must be ')}"
        return value, None
    if kind is bool:
        if isinstance(value, bool):
            return value, None
        return value, f"must be true or false, not {_typename(value)} {value!r}"
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value), None
    if kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value), None
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value, None
    return value, f"must be {_describe(kind)}, not {_typename(value)} {value!r}"


def _coerce_mapping(value: Any, kind: type) -> tuple[Any, str | None]:
    """A plain mapping (an item of a list) into the dataclass `kind`."""
    if not isinstance(value, dict):
        return value, f"must be a mapping, not {_typename(value)}"
    hints = typing.get_type_hints(kind)
    kwargs = {}
    for key, element in value.items():
        if key not in hints:
            return value, f"unknown key {key!r} (known: {', '.join(sorted(hints))})"
        kwargs[key], error = _coerce(element, hints[key])
        if error:
            return value, f"{key} {error}"
    return kind(**kwargs), None


def _describe(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is list:
        return f"a list of {_describe(typing.get_args(kind)[0])}"
    if dataclasses.is_dataclass(kind):
        return "a mapping"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(kind, str(kind))


def _typename(value: Any) -> str:
    names = {list: "a list", dict: "a mapping", type(None): "null", str: "a string",
             int: "an integer", float: "a number", bool: "a boolean"}
    return names.get(type(value), type(value).__name__)


# ---------------------------------------------------------------- output


def masked(config: Any) -> dict[str, Any]:
    """The config as plain data with every secret replaced, for printing and logging."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = masked(value)
        elif f.metadata.get("secret") and value is not None:
            out[f.name] = MASK
        else:
            out[f.name] = value
    return out
