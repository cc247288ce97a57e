"""`shipper audit`: the host, every running container's configuration and its image, judged once.

The events are the ones `shipper run` makes (a host_config audit and, per container,
the start event with its security and image facts) and the same rules judge them, so a
finding here is the alert the running shipper raises; `--ship` indexes them alike.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import docker

from .app import docker_client, image_checker, make_sink
from .config import Config
from .containers import ContainerCache, Selector
from .detect.engine import RulesEngine
from .detect.policy import Allowlist
from .document import DocumentWriter
from .errors import ServiceUnavailable
from .metrics import Metrics
from .model import Event, Severity
from .sources.docker_events import DockerEventsSource
from .sources.host_config import audit_event

PROGRESS_FROM = 20  # containers: below this the audit is quick enough to say nothing while it works
PROGRESS_EVERY = 10


@dataclass(frozen=True)
class Finding:
    severity: str  # the rule's level
    check: str  # the rule's title
    rule_id: str
    benchmark: str | None  # docker-bench check
    object: str  # "engine ..." or "container <name> (<image>)"
    reason: str
    remediation: str | None

    @property
    def rank(self) -> int:
        return int(Severity.parse(self.severity))


def audit_events(client: docker.DockerClient, config: Config,
                 progress: Callable[[str], None] | None = None) -> list[Event]:
    """The host audit, then one start-like event per running container the config selects."""
    host = config.sources.host_config
    events = [audit_event(client, host.proc_root, host.daemon_config)]
    cache = ContainerCache(client)
    selector = Selector.of(config.docker.include, config.docker.exclude)
    starts = DockerEventsSource(client, cache, images=image_checker(config, client))
    running = [c["Id"] for c in client.api.containers(filters={"status": "running"})]
    for number, container_id in enumerate(running, 1):
        meta = cache.get(container_id)
        if meta is not None and selector.wants(meta):
            event = starts.to_event({"Type": "container", "Action": "start", "timeNano": time.time_ns(),
                                     "Actor": {"ID": container_id, "Attributes": {"name": meta.name}}})
            # the same fields as a real start, marked as an audit's so nobody reads it as a restart
            fields = {**event.fields, "event": {**event.fields["event"], "provider": "shipper audit"}}
            events.append(dataclasses.replace(event, fields=fields))
        if progress and len(running) >= PROGRESS_FROM and (number % PROGRESS_EVERY == 0 or number == len(running)):
            progress(f"audited {number}/{len(running)} containers")
    return events


def findings_of(events: list[Event], containers: Callable[[str], Any]) -> list[Finding]:
    found = []
    for event in events:
        if event.container_id:
            meta = containers(event.container_id)
            subject = f"container {meta.name} ({meta.image})" if meta else f"container {event.container_id[:12]}"
        else:
            engine = event.fields.get("shipper", {}).get("engine", {})
            subject = f"engine {', '.join(engine.get('listeners', [])) or engine.get('id') or '?'}"
        for verdict in event.verdicts:
            found.append(Finding(verdict.severity.name.lower(), verdict.rule_name, verdict.rule_id, verdict.benchmark,
                                 subject, verdict.reason, verdict.remediation))
    return sorted(found, key=lambda f: (-f.rank, f.check, f.object))


def render_table(findings: list[Finding], out: TextIO) -> None:
    headers = ("SEVERITY", "CHECK", "OBJECT", "WHAT TO DO")
    rows = [(f.severity, f.check + (f" [docker-bench {f.benchmark}]" if f.benchmark else ""), f.object,
             f.remediation or "") for f in findings]
    widths = [max([len(headers[i])] + [len(r[i]) for r in rows]) for i in range(3)]
    for row in [headers, *rows]:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3], file=out)
    counts = {level: sum(f.severity == level for f in findings) for level in ("critical", "high", "medium", "low")}
    print(f"\n{len(findings)} findings: " + ", ".join(f"{n} {level}" for level, n in counts.items()), file=out)


def run_audit(config: Config, *, fmt: str = "table", fail_on: str | None = None, ship: bool = False,
              out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    client = docker_client(config)
    cache = ContainerCache(client)
    detection = config.detection
    engine = RulesEngine.from_paths([Path(p) for p in detection.rules], cache.get, builtin=detection.builtin_rules,
                                    allowlist=Allowlist(detection.exceptions))
    events = [engine.judge(event) for event in audit_events(client, config, lambda line: print(line, file=err))]
    findings = findings_of(events, cache.get)
    if fmt == "table":
        render_table(findings, out)
    elif fmt == "json":
        json.dump({"findings": [dataclasses.asdict(f) for f in findings], "containers": len(events) - 1}, out, indent=2)
        out.write("\n")
    else:
        for finding in findings:
            out.write(json.dumps(dataclasses.asdict(finding)) + "\n")
    if ship:
        _ship(config, events, cache, err)
    threshold = int(Severity.parse(fail_on)) if fail_on else None
    return 1 if threshold is not None and any(f.rank >= threshold for f in findings) else 0


def _ship(config: Config, events: list[Event], cache: ContainerCache, err: TextIO) -> None:
    writer = DocumentWriter(config.elasticsearch.namespace, cache.get)
    sink = make_sink(config, Metrics())
    try:
        delivery = sink.send(writer.encode(events), writer.index)
    finally:
        sink.close()
    if delivery.retry or delivery.refused:
        why = delivery.unavailable or (f"{len(delivery.refused)} refused, e.g. {delivery.refused[0].error}"
                                       if delivery.refused else f"{len(delivery.retry)} answered 429/5xx; try again")
        raise ServiceUnavailable(f"could not ship the findings to {sink.name}: {why}")
    print(f"shipped {len(events)} events to {writer.index} ({delivery.acknowledged - delivery.duplicates} indexed)",
          file=err)
