"""`shipper status` and `shipper spool replay`: looking at and helping a shipper from outside."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

from .app import StateLock, make_sink
from .config import Config
from .delivery import Deliverer
from .errors import ServiceUnavailable
from .metrics import Metrics
from .sinks.spool import Spool

SHOWN = ("shipper_events_in_total", "shipper_events_out_total", "shipper_duplicates_avoided_total",
         "shipper_deadletters_total", "shipper_item_retries_total", "shipper_spooled_events_total",
         "shipper_replayed_events_total", "shipper_spool_bytes", "shipper_containers_followed")


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def print_status(host: str, port: int) -> int:
    base = f"http://{host}:{port}"
    try:
        code, body = _get(base + "/healthz")
        _, metrics = _get(base + "/metrics")
    except OSError as exc:
        raise ServiceUnavailable(f"no shipper answers at {base} ({exc}); is `shipper run` running with this config?") from exc
    health = json.loads(body)
    print(f"health: {health['status']} (sink {health['sink']})")
    for source, details in health.get("sources", {}).items():
        print(f"source {source}: " + ", ".join(f"{k}={v}" for k, v in details.items()))
    for line in metrics.decode().splitlines():
        if line.startswith(SHOWN):
            print(line)
    return 0 if code == 200 else 1


def replay_spool(config: Config) -> int:
    state = Path(config.state.directory)
    StateLock(state).acquire()
    spool = Spool(state / "spool", config.state.spool_max_bytes)
    metrics = Metrics()
    deliverer = Deliverer(make_sink(config, metrics), spool, metrics, config.elasticsearch.namespace,
                          max_retries=config.pipeline.max_retries)
    sent = 0
    segments = spool.segments()
    for number, path in enumerate(segments, 1):
        replayed = deliverer.replay_one()
        sent += replayed.sent
        if replayed.error is not None:
            raise ServiceUnavailable(f"replay stopped at segment {path.name}: {replayed.error}; {sent} events sent")
        print(f"[{number}/{len(segments)}] {path.name}: {replayed.sent} events acknowledged")
    print(f"spool empty: {sent} events replayed")
    return 0
