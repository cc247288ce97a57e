"""Sink `webhook`: alerts at or above a severity, as Slack-compatible messages.

It runs beside the main sink, in a thread of its own behind a bounded queue, so a
slow or dead webhook never delays shipping: when the queue is full, alerts are
counted as dropped (they are in Elasticsearch anyway). One message per (rule,
container) per `throttle_seconds`; the next one says how many were suppressed.
The URL is a secret (it is the credential): it is never logged.
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson

from ..config import WebhookConfig
from ..detect.policy import Throttle
from ..metrics import Metrics
from ..model import Event, Severity
from ..retry import Backoff
from .base import Notifier
from .http import Answer, pool, post

log = logging.getLogger(__name__)
# urllib3 logs each request's URL at debug level: for a webhook the URL is the secret.
logging.getLogger("urllib3.connectionpool").setLevel(logging.INFO)

COLORS = {Severity.CRITICAL: "#8b0000", Severity.HIGH: "#d9534f", Severity.MEDIUM: "#f0ad4e",
          Severity.LOW: "#5bc0de", Severity.INFORMATIONAL: "#cccccc"}
_STOP = None  # put on the queue by `close`


class WebhookNotifier(Notifier):
    name = "webhook"

    def __init__(self, config: WebhookConfig, metrics: Metrics, containers: Callable[[str], Any] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.config = config
        self.metrics = metrics
        self.containers = containers or (lambda container_id: None)
        self.minimum = Severity.parse(config.min_severity)
        self.http = pool(timeout=config.request_timeout)
        self.host = socket.gethostname()
        self._queue: queue.Queue[Event | None] = queue.Queue(config.queue_size)
        self._throttle = Throttle(config.throttle_seconds)
        self._sleep = sleep
        self._backoff = Backoff()
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)

    def start(self) -> WebhookNotifier:
        self._thread.start()
        return self

    def offer(self, events: list[Event]) -> None:
        """Called on the sources' threads: never blocks."""
        for event in events:
            if not event.verdicts:
                continue
            top = max(event.verdicts, key=lambda v: v.severity)
            if top.severity < self.minimum:
                continue
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self._count("dropped")

    def close(self, timeout: float = 10.0) -> None:
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)
        self.http.clear()

    def _count(self, outcome: str) -> None:
        self.metrics.notifications.labels(outcome).inc()

    def _run(self) -> None:
        while True:
            event = self._queue.get()
            if event is _STOP:
                return
            try:
                self._notify(event)
            except Exception:  # a broken message must not end the notifier
                log.exception("webhook: could not build or send an alert message")

    def _notify(self, event: Event) -> None:
        admitted = self._throttle.admit(max(event.verdicts, key=lambda v: v.severity), event.container_id)
        if admitted is None:
            self._count("suppressed")
            return
        body = orjson.dumps(self.message(event, admitted.suppressed))
        answer = self._post(body)
        if 200 <= answer.status < 300:
            self._count("sent")
        else:
            self._count("failed")
            log.warning("webhook: alert not delivered", extra={"status": answer.status, "answer": answer.reason,
                                                               "rule_id": admitted.rule_id})

    def _post(self, body: bytes) -> Answer:
        answer = Answer(0, "not sent")
        url = self.config.url or ""  # enabled implies a URL: the config loader checks it
        for attempt in range(self.config.max_retries + 1):
            answer = post(self.http, url, body, {"Content-Type": "application/json"})
            if answer.final or attempt == self.config.max_retries:
                break
            self._sleep(self._backoff.delay(attempt, answer.retry_after))
        return answer

    def message(self, event: Event, suppressed: int = 0) -> dict[str, Any]:
        top = max(event.verdicts, key=lambda v: v.severity)
        meta = self.containers(event.container_id) if event.container_id else None
        container = meta.name if meta else (event.container_id or "")[:12] or "host"
        image = meta.image if meta else ""
        fields = [
            {"title": "Rule", "value": f"{top.rule_name} ({top.rule_id})", "short": False},
            {"title": "Severity", "value": top.severity.name.lower(), "short": True},
            {"title": "Container", "value": container, "short": True},
            {"title": "Image", "value": image or "-", "short": True},
            {"title": "Host", "value": self.host, "short": True},
            {"title": "Reason", "value": top.reason[:1000], "short": False},
        ]
        if suppressed:
            fields.append({"title": "Suppressed", "value": f"{suppressed} more alert(s) of this rule on this container "
                                                           f"in the last {self.config.throttle_seconds:g} s", "short": False})
        if self.config.link_template:
            link = self.config.link_template.format(id=event.id, rule_id=top.rule_id,
                                                    container_id=event.container_id or "", timestamp=event.timestamp)
            fields.append({"title": "Kibana", "value": link, "short": False})
        text = f"[{top.severity.name}] {top.rule_name} in container {container} on {self.host}"
        return {"text": text, "attachments": [{"color": COLORS[top.severity], "fallback": text, "fields": fields,
                                               "ts": int(time.time())}]}
