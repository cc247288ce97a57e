"""Self-monitoring: Prometheus metrics, `/metrics` and `/healthz` on a localhost port.

Counters are bumped once per batch, never per event, to stay off the hot path.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.events_in = Counter("shipper_events_in", "Events read, by source", ["source"], registry=r)
        self.events_out = Counter("shipper_events_out", "Events acknowledged by a sink (indexed or duplicate)", ["sink"], registry=r)
        self.bytes_out = Counter("shipper_bytes_out", "Bulk body bytes sent", ["sink"], registry=r)
        self.duplicates = Counter("shipper_duplicates_avoided", "Items already indexed: answered 409, or found by id when re-sent",
                                  ["sink"], registry=r)
        self.resent_found = Counter("shipper_resent_already_indexed",
                                    "Re-sent items (spool replay, re-read after a start) skipped: their id was already "
                                    "in the data stream, in an older backing index than the one create checks", ["sink"],
                                    registry=r)
        self.retries = Counter("shipper_item_retries", "Items retried after 429/5xx", ["sink"], registry=r)
        self.deadletters = Counter("shipper_deadletters", "Items refused for good, written to the dead-letter stream", ["sink"], registry=r)
        self.lost = Counter("shipper_refused_lost", "Items refused by their stream and then by the dead-letter "
                            "stream too: logged with their id, not stored", ["sink"], registry=r)
        self.spooled = Counter("shipper_spooled_events", "Events written to the disk spool", registry=r)
        self.replayed = Counter("shipper_replayed_events", "Events replayed from the disk spool", registry=r)
        self.spool_bytes = Gauge("shipper_spool_bytes", "Bytes waiting in the disk spool", registry=r)
        self.spool_full = Gauge("shipper_spool_full", "1 while the spool is full and sources are paused", registry=r)
        self.queue_depth = Gauge("shipper_queue_depth", "Batches waiting in a queue", ["queue"], registry=r)
        self.containers = Gauge("shipper_containers_followed", "Containers whose logs are followed", registry=r)
        self.containers_unreadable = Counter("shipper_containers_unreadable", "Containers whose logs cannot be read "
                                             "(log driver none, or not read back by the engine), by log driver",
                                             ["driver"], registry=r)
        self.batch_seconds = Histogram(
            "shipper_batch_seconds", "Time to acknowledge one bulk request", ["sink"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.alerts = Counter("shipper_alerts", "Verdicts attached to events, by rule id", ["rule"], registry=r)
        self.alerts_suppressed = Counter("shipper_alerts_suppressed", "Verdicts throttled as repeats", ["rule"], registry=r)
        self.alerts_allowlisted = Counter("shipper_alerts_allowlisted", "Verdicts dropped by an allowlist entry", ["rule"], registry=r)
        self.notifications = Counter("shipper_notifications", "Webhook alerts by outcome: sent, failed, suppressed, dropped",
                                     ["outcome"], registry=r)
        self.kernel_events_lost = Counter("shipper_kernel_events_lost", "Times the kernel dropped process events or "
                                          "audit records because the shipper read too slowly", registry=r)
        self.detector_errors = Counter("shipper_detector_errors", "Detectors disabled after raising", ["detector"], registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def value(self, name: str, **labels: str) -> float:
        """One sample's current value (0 if never set); for status lines and tests."""
        found = self.registry.get_sample_value(name, labels)
        return found or 0.0


class MonitorServer:
    """Serves /metrics and /healthz; `health()` returns (ok, details)."""

    def __init__(self, metrics: Metrics, health: Callable[[], tuple[bool, dict[str, Any]]], host: str, port: int):
        metrics_body = metrics.render

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path == "/metrics":
                    self._answer(200, CONTENT_TYPE_LATEST, metrics_body())
                elif self.path == "/healthz":
                    ok, details = health()
                    self._answer(200 if ok else 503, "application/json", json.dumps(details).encode())
                else:
                    self._answer(404, "text/plain", b"try /metrics or /healthz\n")

            def _answer(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.address = self.server.server_address
        self._thread = threading.Thread(target=self.server.serve_forever, name="monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()
        log.info("monitoring on http://%s:%s (/metrics, /healthz)", *self.address[:2])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
