"""Building the running shipper from a `Config`: the commands' shared wiring."""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from .checkpoints import Checkpoints
from .config import Config
from .containers import BothSelectors, ContainerCache, Selector, Watched
from .detect.engine import RulesEngine
from .document import DocumentWriter
from .errors import ConfigError, Problem, ServiceUnavailable, ShipperError
from .images import ImageChecker, ImagePolicy
from .metrics import Metrics, MonitorServer
from .pipeline import Pipeline
from .private import open_private, prepare_state_directory
from .sinks.elasticsearch import ElasticsearchSink
from .sinks.logstash import LogstashSink
from .sinks.spool import Spool
from .sinks.webhook import WebhookNotifier
from .sources.base import Source
from .sources.docker_events import DockerEventsSource
from .sources.docker_logs import DockerLogsSource, template_event
from .sources.fastpath import JsonFileDocuments
from .sources.files import FilesSource
from .sources.host_config import HostConfigSource
from .sources.processes import ProcessesSource
from .sources.stats import StatsSource
from .sources.vulnerabilities import VulnerabilitiesSource

log = logging.getLogger(__name__)


def docker_client(config: Config) -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=config.docker.url) if config.docker.url else docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        where = config.docker.url or os.environ.get("DOCKER_HOST") or "the local socket"
        raise ServiceUnavailable(f"cannot reach the Docker engine at {where}: {exc}") from exc
    return client


class StateLock:
    """One shipper per state directory: two would fight over checkpoints and the spool."""

    def __init__(self, directory: Path):
        prepare_state_directory(directory)
        self.path = directory / "lock"
        self._handle = open_private(self.path, "a+")

    def acquire(self) -> None:
        try:
            fcntl.flock(self._handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ShipperError(f"another shipper is running with state directory {self.path.parent} "
                               f"(lock {self.path}); stop it or use another state.directory") from None
        self._handle.truncate(0)
        self._handle.write(str(os.getpid()))
        self._handle.flush()


def build_sources(config: Config, client: docker.DockerClient, cache: ContainerCache,
                  metrics: Metrics | None = None, documents: JsonFileDocuments | None = None) -> list[Source]:
    sources: list[Source] = []
    watched = Watched(client, cache, Selector.of(config.docker.include, config.docker.exclude))
    logs = config.sources.docker_logs
    if logs.enabled:
        selector = BothSelectors(watched.selector, Selector.of(logs.include, logs.exclude))
        sources.append(DockerLogsSource(
            client, cache, selector=selector, mode=logs.mode, root_dir=config.docker.root_dir,
            batch_size=config.pipeline.batch_max_docs, batch_bytes=config.pipeline.batch_max_bytes,
            max_message_length=logs.max_message_length,
            poll_interval=logs.poll_interval, start_at=logs.start_at, metrics=metrics, documents=documents,
        ))
    if config.sources.docker_events.enabled:
        sources.append(DockerEventsSource(client, cache, images=image_checker(config, client)))
    processes = config.sources.processes
    if processes.enabled:
        sources.append(ProcessesSource(watched, interval=processes.interval, network=processes.network,
                                       realtime=processes.realtime, audit=processes.audit,
                                       proc_root=processes.proc_root, cgroup_root=processes.cgroup_root,
                                       hash_max_bytes=config.sources.files.hash_max_bytes, metrics=metrics,
                                       state_directory=config.state.directory,
                                       startup_seconds=config.sources.files.startup_seconds))
    files = config.sources.files
    if files.enabled:
        sources.append(FilesSource(watched, host_paths=files.host_paths, exclude=files.exclude,
                                   hash_max_bytes=files.hash_max_bytes, max_watches=files.max_watches,
                                   catch_up_seconds=files.catch_up_seconds, startup_seconds=files.startup_seconds,
                                   watch_dev=files.watch_dev))
    if config.sources.stats.enabled:
        sources.append(StatsSource(watched, interval=config.sources.stats.interval))
    host = config.sources.host_config
    if host.enabled:
        sources.append(HostConfigSource(client, host.interval, host.proc_root, host.daemon_config))
    vulnerabilities = config.sources.vulnerabilities
    if vulnerabilities.directory:
        sources.append(VulnerabilitiesSource(client, vulnerabilities.directory, vulnerabilities.rescan_interval))
    return sources


def image_checker(config: Config, client: docker.DockerClient) -> ImageChecker | None:
    images = config.detection.images
    if not images.enabled:
        return None
    return ImageChecker(client, ImagePolicy(tuple(images.allowed_registries), images.max_age_days))


def make_sink(config: Config, metrics: Metrics):
    """The main sink: Elasticsearch directly, or Logstash in front of it (same documents, same ids)."""
    if config.output == "logstash":
        return LogstashSink(config.logstash, metrics)
    return ElasticsearchSink.from_config(config, metrics)


def monitor_server(config: Config, metrics: Metrics,
                   health: Callable[[], tuple[bool, dict[str, Any]]]) -> MonitorServer | None:
    if not config.monitor.port:
        return None
    try:
        return MonitorServer(metrics, health, config.monitor.host, config.monitor.port)
    except OSError as exc:  # the port is taken, or the host is not an address of this machine
        where = f"monitor {config.monitor.host}:{config.monitor.port}"
        raise ConfigError([Problem(where, "", f"cannot listen there ({exc.strerror or exc}); set monitor.port "
                                              "to a free port (0 turns the monitor off) or monitor.host")]) from None


def run(config: Config) -> int:
    state = Path(config.state.directory)
    lock = StateLock(state)
    lock.acquire()
    metrics = Metrics()
    # bound before anything starts, so a taken port fails at once; it serves once the pipeline exists
    pipeline: Pipeline
    monitor = monitor_server(config, metrics, lambda: pipeline.health())
    client = docker_client(config)
    cache = ContainerCache(client)
    spool = Spool(state / "spool", config.state.spool_max_bytes)
    engine = None
    if config.detection.enabled:
        engine = RulesEngine.from_config(config.detection, cache.get, metrics=metrics, model_dir=state / "models")
    writer = DocumentWriter(config.elasticsearch.namespace, cache.get)
    documents = JsonFileDocuments(writer, cache.get, lambda: engine.log_prefilter if engine else None, template_event)
    notifier = WebhookNotifier(config.webhook, metrics, cache.get).start() if config.webhook.enabled else None
    pipeline = Pipeline(
        sources=build_sources(config, client, cache, metrics, documents),
        sink=make_sink(config, metrics),
        spool=spool,
        checkpoints=Checkpoints(state / "checkpoints.json"),
        writer=writer,
        metrics=metrics,
        process=engine.process if engine else None,
        notifiers=(notifier,) if notifier else (),
        settings=config.pipeline,
        status_interval=config.monitor.status_interval,
    )
    if monitor:
        monitor.start()
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    log.info("shipping", extra={"index": pipeline.writer.index, "hosts": len(config.elasticsearch.hosts),
                                "sources": [s.name for s in pipeline.sources], "state": str(state)})
    pipeline.start()
    followed = next((s for s in pipeline.sources if isinstance(s, DockerLogsSource)), None)
    while not stop.wait(1.0):
        if followed is not None:
            metrics.containers.set(followed.status()["containers_followed"])
    pipeline.stop()
    if monitor:
        monitor.close()
    return 0
