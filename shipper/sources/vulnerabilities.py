"""Source `vulnerability`: Trivy reports (`trivy image -f json`) dropped in a directory.

Each finding becomes one ECS `vulnerability.*` event per running container of the
scanned image (joined by image id or repo digest), or one event without a container
when none runs it. The directory is watched (watchdog) and read again every
`rescan_interval` seconds, so a container started later from a scanned image is
joined too; ids are deterministic, so a finding is indexed once per container and report.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import orjson
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from .. import kinds
from ..model import Event, event_id
from ..timefmt import iso_time
from .base import Batch, Emit, Source

log = logging.getLogger(__name__)

NAME = kinds.VULNERABILITY.name


@dataclass(frozen=True)
class RunningContainer:
    id: str
    image_id: str
    repo_digests: frozenset[str]  # "name@sha256:..." of its image


class ReportError(ValueError):
    """Not a Trivy image report we can use."""


def read_report(path: Path) -> dict[str, Any]:
    try:
        report = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ReportError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("SchemaVersion") != 2 or "Results" not in report:
        raise ReportError(f"{path}: not a Trivy JSON report (SchemaVersion 2 with Results)")
    return report


def _digest(reference: str) -> str:
    return reference.rpartition("@")[2]


def containers_of(report: dict[str, Any], running: Iterable[RunningContainer]) -> list[RunningContainer]:
    """The running containers of the scanned image: same image id, or a repo digest in common."""
    metadata = report.get("Metadata") or {}
    image_id = metadata.get("ImageID")
    digests = {_digest(d) for d in metadata.get("RepoDigests") or []}
    return [c for c in running
            if (image_id and c.image_id == image_id) or digests & {_digest(d) for d in c.repo_digests}]


def _score(vulnerability: dict[str, Any]) -> tuple[float | None, str | None]:
    cvss = vulnerability.get("CVSS") or {}
    source: dict[str, Any] = cvss.get(vulnerability.get("SeveritySource")) or cvss.get("nvd") or next(iter(cvss.values()), {})
    if source.get("V3Score") is not None:
        return float(source["V3Score"]), "3.x"
    if source.get("V2Score") is not None:
        return float(source["V2Score"]), "2.0"
    return None, None


def finding_fields(report: dict[str, Any], result: dict[str, Any], vulnerability: dict[str, Any],
                   path: Path) -> dict[str, Any]:
    """One finding in ECS: `vulnerability.*`, `package.*`, and what ECS has no field for under `shipper.vulnerability`."""
    metadata = report.get("Metadata") or {}
    vuln_id = vulnerability.get("VulnerabilityID", "")
    severity = (vulnerability.get("Severity") or "UNKNOWN").upper()
    fixed = vulnerability.get("FixedVersion") or None
    score, score_version = _score(vulnerability)
    ecs_vulnerability: dict[str, Any] = {
        "id": vuln_id,
        "severity": severity,
        "description": vulnerability.get("Title") or vulnerability.get("Description") or "",
        "reference": vulnerability.get("PrimaryURL") or "",
        "scanner": {"vendor": "Trivy"},
        "category": [result.get("Class") or "unknown"],
        "enumeration": vuln_id.split("-", 1)[0] if "-" in vuln_id else "",
        "report_id": metadata.get("ImageID") or report.get("ArtifactName") or "",
    }
    if score is not None:
        ecs_vulnerability.update(classification="CVSS", score={"base": score, "version": score_version})
    package = {"name": vulnerability.get("PkgName", ""), "version": vulnerability.get("InstalledVersion", ""),
               "type": result.get("Type") or ""}
    if (vulnerability.get("PkgIdentifier") or {}).get("PURL"):
        package["reference"] = vulnerability["PkgIdentifier"]["PURL"]
    image = report.get("ArtifactName") or metadata.get("ImageID") or ""
    message = (f"{vuln_id} ({severity}) in {package['name']} {package['version']}"
               f"{f' (fixed in {fixed})' if fixed else ' (no fix yet)'} of image {image}, {result.get('Target', '')}")
    return {
        "event": {"kind": "event", "module": "trivy", "dataset": kinds.VULNERABILITY.dataset, "category": ["vulnerability"],
                  "type": ["info"], "action": "vulnerability-found"},
        "message": message,
        "vulnerability": ecs_vulnerability,
        "package": package,
        "shipper": {"vulnerability": {
            "fixed_version": fixed,
            "fix_available": fixed is not None,
            "status": vulnerability.get("Status"),
            "target": result.get("Target"),
            "image": {"id": metadata.get("ImageID"), "name": image, "repo_digests": metadata.get("RepoDigests") or []},
            "scanned_at": report.get("CreatedAt"),
            "report": str(path),
        }},
    }


def report_events(report: dict[str, Any], path: Path, running: Iterable[RunningContainer], now: float) -> list[Event]:
    """Every finding of `report`, once per running container of its image (once alone when none runs it)."""
    joined: list[RunningContainer | None] = [*containers_of(report, running)] or [None]
    scanned = report.get("CreatedAt") or (report.get("Metadata") or {}).get("ImageID") or str(path)
    timestamp = iso_time(now)
    events = []
    for result in report.get("Results") or []:
        for vulnerability in result.get("Vulnerabilities") or []:
            fields = finding_fields(report, result, vulnerability, path)
            for container in joined:
                events.append(Event(
                    id=event_id(NAME, scanned, result.get("Target"), vulnerability.get("PkgID") or vulnerability.get("PkgName"),
                                vulnerability.get("InstalledVersion"), vulnerability.get("VulnerabilityID"),
                                container.id if container else ""),
                    timestamp=timestamp, source=NAME, fields=fields,
                    container_id=container.id if container else None,
                ))
    return events


class _Changed(FileSystemEventHandler):
    def __init__(self, paths: queue.Queue[Path]):
        self.paths = paths

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.is_directory or event.event_type not in ("created", "modified", "moved", "closed"):
            return
        target = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
        if target.endswith(".json"):
            self.paths.put(Path(target))


class VulnerabilitiesSource(Source):
    name = NAME

    def __init__(self, client: docker.DockerClient, directory: str, rescan_interval: float = 300.0):
        self.client = client
        self.directory = Path(directory)
        self.rescan_interval = rescan_interval
        self._closed = threading.Event()
        self._changed: queue.Queue[Path] = queue.Queue()
        self._observer: BaseObserver | None = None
        self._digests: dict[str, frozenset[str]] = {}
        self._sent: set[str] = set()  # ids already emitted: a rescan sends only what is new (a restart resends, 409s)
        self.reports = 0
        self.findings = 0

    def run(self, emit: Emit, positions: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._observer = Observer()
            self._observer.schedule(_Changed(self._changed), str(self.directory), recursive=False)
            self._observer.start()
        except OSError as exc:
            log.error("vulnerability: cannot watch sources.vulnerabilities.directory %s: %s; reports are not read",
                      self.directory, exc.strerror or exc)
            return
        try:
            while not self._closed.is_set():
                self._read(sorted(self.directory.glob("*.json")), emit)
                self._wait_for_changes(emit)
        finally:
            self._observer.stop()
            self._observer.join(5)

    def _wait_for_changes(self, emit: Emit) -> None:
        """Read each changed report as it comes, until the next full rescan is due."""
        waited = 0.0
        while not self._closed.is_set() and waited < self.rescan_interval:
            try:
                path = self._changed.get(timeout=0.5)
            except queue.Empty:
                waited += 0.5
                continue
            changed = {path}
            while not self._changed.empty():  # a report is written in several chunks
                changed.add(self._changed.get_nowait())
            self._closed.wait(0.2)
            self._read(sorted(changed), emit)

    def _read(self, paths: list[Path], emit: Emit) -> None:
        if not paths:
            return
        try:
            running = self.running()
        except docker.errors.DockerException as exc:
            log.warning("vulnerability: cannot list containers, retrying", extra={"error": str(exc)})
            return
        for path in paths:
            try:
                report = read_report(path)
            except ReportError as exc:
                if path.exists():
                    log.warning("vulnerability: report skipped", extra={"error": str(exc)})
                continue
            events = [e for e in report_events(report, path, running, time.time()) if e.id not in self._sent]
            self.reports += 1
            self.findings += len(events)
            if events:
                emit(Batch(self.name, events))
                if len(self._sent) > 1_000_000:
                    self._sent.clear()
                self._sent.update(e.id for e in events)

    def running(self) -> list[RunningContainer]:
        out = []
        for container in self.client.api.containers(filters={"status": "running"}):
            image_id = container.get("ImageID") or ""
            if image_id not in self._digests:
                try:
                    attrs = self.client.api.inspect_image(image_id)
                    self._digests[image_id] = frozenset(attrs.get("RepoDigests") or [])
                except docker.errors.NotFound:
                    self._digests[image_id] = frozenset()
            out.append(RunningContainer(container["Id"], image_id, self._digests[image_id]))
        return out

    def close(self) -> None:
        self._closed.set()

    def status(self) -> dict[str, Any]:
        return {"vulnerability_reports": self.reports, "vulnerability_findings": self.findings}
