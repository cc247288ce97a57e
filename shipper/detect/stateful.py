"""Stateful detectors: judgements that need more than one event.

Each detector sees every event of the sampled sources (with the container's metadata
joined, as rules do) and returns an `Observation`: its verdicts, and what it adds to the
event (the anomaly score); it never changes the document it was shown. State is per
container and guarded by a lock held only for bookkeeping: sources call detectors from
their own threads, and the anomaly model trains outside it.
"""

from __future__ import annotations

import logging
import math
import pickle
import re
import threading
import time
import uuid
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import kinds
from ..config import AnomalyConfig, MiningConfig, PortScanConfig
from ..model import Severity, Verdict
from ..private import open_private, private_dir
from .forest import Forest, fit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DetectorInfo:
    """What a detector's alerts are called: the same fields a Sigma rule gives."""

    key: str
    title: str
    description: str
    severity: Severity
    tactic: str
    technique: str

    @property
    def id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"shipper:detector:{self.key}"))

    def verdict(self, reason: str, risk_score: float | None = None) -> Verdict:
        return Verdict(rule_id=self.id, rule_name=self.title, severity=self.severity, reason=reason,
                       tactic=self.tactic, technique=self.technique, risk_score=risk_score)


@dataclass(frozen=True)
class Observation:
    """What a detector makes of one event: its verdicts, and the fields it adds under `shipper.`."""

    verdicts: tuple[Verdict, ...] = ()
    fields: Mapping[str, Any] = field(default_factory=dict)


NOTHING = Observation()


class Detector:
    info: DetectorInfo

    def observe(self, doc: dict[str, Any], source: str, container_id: str | None,
                verdicts: Sequence[Verdict] = ()) -> Observation:
        """What this detector makes of the event; `verdicts` are what the rules already said of it.
        `doc` is shared with the rules and the other detectors: read it, never change it."""
        raise NotImplementedError


def _container_name(doc: dict[str, Any]) -> str:
    container = doc.get("container") or {}
    return container.get("name") or (container.get("id") or "")[:12]


# ---------------------------------------------------------------- port scan


@dataclass
class _Touched:
    """One container's outbound destinations inside the window, with running counts."""

    last: OrderedDict = field(default_factory=OrderedDict)  # (ip, port) -> time, oldest first
    ports: Counter = field(default_factory=Counter)
    hosts: Counter = field(default_factory=Counter)
    syn_sent: deque = field(default_factory=deque)

    def add(self, now: float, ip: str, port: int, state: str) -> None:
        key = (ip, port)
        if key in self.last:
            self.last.move_to_end(key)
        else:
            self.ports[port] += 1
            self.hosts[ip] += 1
        self.last[key] = now
        if state == "SYN_SENT":
            self.syn_sent.append(now)

    def expire(self, before: float) -> None:
        while self.last:
            (ip, port), at = next(iter(self.last.items()))
            if at >= before:
                break
            del self.last[(ip, port)]
            for counter, value in ((self.ports, port), (self.hosts, ip)):
                counter[value] -= 1
                if not counter[value]:
                    del counter[value]
        while self.syn_sent and self.syn_sent[0] < before:
            self.syn_sent.popleft()


class PortScanDetector(Detector):
    info = DetectorInfo(
        "port_scan", "Port scan from a container",
        "A container opened connections to many distinct ports or hosts, or holds many unanswered SYNs, in a short window.",
        Severity.HIGH, "TA0007 Discovery", "T1046")

    def __init__(self, config: PortScanConfig):
        self.config = config
        self._touched: dict[str, _Touched] = defaultdict(_Touched)
        self._lock = threading.Lock()

    def observe(self, doc, source, container_id, verdicts=()):
        network = doc.get("network") or {}
        if source != kinds.NETWORK.name or network.get("direction") != "egress" or not container_id:
            return NOTHING
        destination = doc.get("destination") or {}
        now = time.monotonic()
        with self._lock:
            touched = self._touched[container_id]
            state = ((doc.get("shipper") or {}).get("network") or {}).get("state")
            touched.add(now, destination.get("ip"), destination.get("port"), state)
            touched.expire(now - self.config.window)
            ports, hosts, syn_sent = len(touched.ports), len(touched.hosts), len(touched.syn_sent)
        window = f"{self.config.window:g} s"
        if ports >= self.config.distinct_ports:
            why = f"{ports} distinct destination ports on {hosts} host(s) within {window}"
        elif hosts >= self.config.distinct_hosts:
            why = f"{hosts} distinct destination hosts within {window}"
        elif syn_sent >= self.config.syn_sent:
            why = f"{syn_sent} unanswered connection attempts (SYN_SENT) within {window}"
        else:
            return NOTHING
        last = f"{destination.get('ip')}:{destination.get('port')}"
        return Observation((self.info.verdict(f"Port scan from container {_container_name(doc)}: {why} (last {last})"),))


# ---------------------------------------------------------------- crypto-mining

MINER_NAMES = re.compile(r"xmrig|xmr-stak|minerd|cpuminer|ccminer|ethminer|nbminer|t-rex|lolminer|phoenixminer|nanominer"
                         r"|srbminer|teamredminer|gminer|bminer|cgminer|bfgminer", re.I)
STRATUM = re.compile(r"stratum2?\+(tcp|ssl|tls)://", re.I)
POOL_PORTS = {3333, 4444, 5555, 7777, 14444, 45700}


class MiningDetector(Detector):
    info = DetectorInfo(
        "crypto_mining", "Crypto-mining in a container",
        "Sustained high CPU together with a miner signal: a miner's name, a stratum URL, a mining pool port.",
        Severity.CRITICAL, "TA0040 Impact", "T1496")

    def __init__(self, config: MiningConfig):
        self.config = config
        self._signals: dict[str, tuple[float, str]] = {}
        self._high: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()

    def signal_of(self, doc: dict[str, Any], source: str, verdicts: Sequence[Verdict]) -> str | None:
        process = doc.get("process") or {}
        text = " ".join(filter(None, (process.get("name"), process.get("executable"), process.get("command_line"))))
        if text and STRATUM.search(text):
            return f"stratum URL in process {process.get('command_line', '')[:120]!r}"
        if source == kinds.PROCESSES.name and text and MINER_NAMES.search(text):
            return f"miner process {process.get('name')!r} ({process.get('command_line', '')[:120]})"
        port = (doc.get("destination") or {}).get("port")
        if source == kinds.NETWORK.name and (doc.get("network") or {}).get("direction") == "egress" and port in POOL_PORTS:
            return f"connection to mining pool port {port} ({doc['destination'].get('ip')})"
        # a log rule flagged the line as resource hijacking, our own technique (log_crypto_miner.yml)
        if source == kinds.DOCKER_LOGS.name and any(v.technique == self.info.technique for v in verdicts):
            return "miner output in the container's log"
        return None

    def is_high(self, cores: float, limit: float | None, host_idle: float | None) -> bool:
        """High: `cpu_cores` or more, or (from `min_cores` up) `cpu_share` of what the container could have had:
        its limit, or what it used plus what the host left idle, whichever is less. A busy loop on a
        saturated 2-core host gets half a core, and still takes all it can."""
        if cores >= self.config.cpu_cores:
            return True
        if cores < self.config.min_cores:
            return False
        could_have = min(limit or float("inf"), cores + host_idle if host_idle is not None else float("inf"))
        return could_have != float("inf") and cores >= self.config.cpu_share * could_have

    def observe(self, doc, source, container_id, verdicts=()):
        if not container_id:
            return NOTHING
        now = time.monotonic()
        signal = self.signal_of(doc, source, verdicts)
        with self._lock:
            if signal:
                self._signals[container_id] = (now, signal)
            if source != kinds.STATS.name:
                return NOTHING
            cpu = _custom_container(doc).get("cpu") or {}  # the stats source's figures beyond ECS (ecs.py)
            cores = cpu.get("cores", 0.0)
            high = self.is_high(cores, cpu.get("limit_cores"), ((doc.get("shipper") or {}).get("host") or {}).get(
                "cpu_idle_cores"))
            self._high[container_id] = self._high[container_id] + 1 if high else 0
            high = self._high[container_id]
            remembered = self._signals.get(container_id)
        if high < self.config.sustained_samples or not remembered or now - remembered[0] > self.config.signal_memory:
            return NOTHING
        return Observation((self.info.verdict(f"Crypto-mining in container {_container_name(doc)}: {cores:.2f} cores "
                                              f"for {high} samples, and {remembered[1]}"),))


# ---------------------------------------------------------------- anomaly

SPAWNS_KEPT = 10_000  # per container: past that, "new processes per minute" saturates
FEATURES = ("cpu_cores", "memory_log_mib", "pids", "net_log_kibps", "disk_log_kibps", "new_processes_per_min")
# How far a feature may wander and still be "the same behaviour": training data is
# jittered by this much so an idle, constant baseline still has a shape to learn.
TOLERANCE = (0.1, 0.15, 1.0, 0.5, 0.5, 2.0)
MODEL_FORMAT = 2  # 2: the forest as lists (forest.py); 1 was scikit-learn's object


def _safe_name(image: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", image)[:150] or "unknown"


@dataclass
class _ImageModel:
    image: str
    samples: list[list[float]] = field(default_factory=list)
    forest: Forest | None = None
    trained_on: int = 0
    training: bool = False  # a thread is fitting the forest, outside the lock


class AnomalyDetector(Detector):
    info = DetectorInfo(
        "resource_anomaly", "Anomalous resource use in a container",
        "An IsolationForest trained on the image's own baseline (CPU, memory, pids, I/O, new processes) "
        "scores this sample as unlike anything it learned.",
        Severity.MEDIUM, "TA0040 Impact", "T1496")

    def __init__(self, config: AnomalyConfig, model_dir: Path | None):
        self.config = config
        self.model_dir = model_dir
        self._models: dict[str, _ImageModel] = {}
        # when each container's recent processes started (the last minute), and since when it is observed
        self._spawns: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=SPAWNS_KEPT))
        self._first_seen: dict[str, float] = {}
        self._high: dict[str, int] = defaultdict(int)  # consecutive samples at or above the threshold
        self._lock = threading.Lock()

    def observe(self, doc, source, container_id, verdicts=()):
        if not container_id:
            return NOTHING
        if source == kinds.PROCESSES.name:
            with self._lock:
                now = time.monotonic()
                self._first_seen.setdefault(container_id, now)
                self._spawns[container_id].append(now)
            return NOTHING
        if source != kinds.STATS.name:
            return NOTHING
        image = ((doc.get("container") or {}).get("image") or {}).get("name") or "unknown"
        vector = self._vector(doc, container_id)
        model = self._model(image)
        samples = None
        with self._lock:
            forest, trained_on = model.forest, model.trained_on
            if forest is None:
                model.samples.append(vector)
                if not model.training and len(model.samples) >= self.config.warmup_samples:
                    model.training, samples = True, list(model.samples)
        if forest is None:
            if samples is not None:
                self._train(model, samples)
            return NOTHING
        score = forest.score(vector)
        added = {"anomaly": {"score": round(score, 3), "model": image, "features": dict(zip(FEATURES, vector))}}
        with self._lock:
            streak = self._high[container_id] = self._high[container_id] + 1 if score >= self.config.threshold else 0
        if streak < self.config.consecutive:
            return Observation(fields=added)  # one odd sample is noise (a health check, a log rotation); a burst lasts
        return Observation((self.info.verdict(
            f"Anomalous resource use in container {_container_name(doc)}: score {score:.2f} >= "
            f"{self.config.threshold:g} for {streak} samples against the baseline of {image} "
            f"({trained_on} samples); "
            + ", ".join(f"{k}={v:g}" for k, v in zip(FEATURES, vector)), risk_score=round(score * 100, 1)),), added)

    def _model(self, image: str) -> _ImageModel:
        """The image's model: known, reloaded from disk (read outside the lock), or a new one."""
        with self._lock:
            model = self._models.get(image)
        if model is None:
            loaded = self._load(image)
            with self._lock:
                model = self._models.setdefault(image, loaded)
        return model

    def _vector(self, doc: dict[str, Any], container_id: str) -> list[float]:
        container = _custom_container(doc)  # the stats source's figures beyond ECS (ecs.py)
        network = container.get("network") or {}
        disk = container.get("disk") or {}
        now = time.monotonic()
        with self._lock:  # a sliding minute: a health check every second is 60/min from its first sample on
            observed = min(60.0, max(1.0, now - self._first_seen.setdefault(container_id, now)))
            spawns = self._spawns[container_id]
            while spawns and spawns[0] < now - 60:
                spawns.popleft()
            per_minute = len(spawns) * 60 / observed
        net = (network.get("ingress") or {}).get("rate", 0) + (network.get("egress") or {}).get("rate", 0)
        io = (disk.get("read") or {}).get("rate", 0) + (disk.get("write") or {}).get("rate", 0)
        return [
            round((container.get("cpu") or {}).get("cores", 0.0), 2),
            round(math.log1p(((container.get("memory") or {}).get("bytes", 0)) / 2**20), 2),
            float(container.get("pids", 0)),
            round(math.log1p(net / 1024), 2),
            round(math.log1p(io / 1024), 2),
            round(per_minute, 1),
        ]

    def _train(self, model: _ImageModel, samples: list[list[float]]) -> None:
        """Fit on a copy of the samples, outside the lock (seconds of CPU a source thread must not
        wait for), then swap the forest in under it."""
        try:
            forest = self._fit(samples)
        except BaseException:
            with self._lock:
                model.training = False  # the next sample tries again
            raise
        with self._lock:
            model.forest, model.trained_on, model.samples, model.training = forest, len(samples), [], False
        log.info("anomaly model trained", extra={"image": model.image, "samples": model.trained_on})
        self._save(model)

    def _fit(self, samples: list[list[float]]) -> Forest:
        return fit(samples, TOLERANCE, self.config.trees)

    # ------------------------------------------------------------ persistence

    def _path(self, image: str) -> Path | None:
        return self.model_dir / f"{_safe_name(image)}.pickle" if self.model_dir else None

    def _save(self, model: _ImageModel) -> None:
        path = self._path(model.image)
        if path is None or model.forest is None:
            return
        private_dir(path.parent)
        tmp = path.with_suffix(".tmp")
        with open_private(tmp, "wb") as handle:
            pickle.dump({"format": MODEL_FORMAT, "sklearn": model.forest.sklearn, "image": model.image,
                         "features": FEATURES, "trained_on": model.trained_on, "forest": model.forest.to_dict()},
                        handle)
        tmp.replace(path)

    def _load(self, image: str) -> _ImageModel:
        """The image's model as saved by an earlier run, or an empty one that starts its warm-up."""
        model = _ImageModel(image)
        path = self._path(image)
        if path is None or not path.exists():
            return model
        try:
            with open(path, "rb") as handle:  # our own file, in our own state directory
                saved = pickle.load(handle)
        except Exception as exc:
            log.warning("anomaly model unreadable, training again", extra={"path": str(path), "error": str(exc)})
            return model
        if (saved.get("format"), tuple(saved.get("features", ()))) != (MODEL_FORMAT, FEATURES):
            log.warning("anomaly model from another version, training again",
                        extra={"path": str(path), "saved_format": saved.get("format")})
            return model
        model.forest, model.trained_on = Forest.from_dict(saved["forest"]), saved["trained_on"]
        log.info("anomaly model reloaded", extra={"image": image, "samples": model.trained_on, "path": str(path)})
        return model


def _custom_container(doc: dict[str, Any]) -> dict[str, Any]:
    return (doc.get("shipper") or {}).get("container") or {}
