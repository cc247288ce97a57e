"""Sink `logstash`: the same documents as the direct path, POSTed to Logstash's `http` input.

Each batch is one JSON array. Every document carries `@metadata._id` and
`@metadata._index` (Logstash keeps `@metadata` out of the indexed document), so the
pipeline in `logstash/pipeline/shipper.conf` writes it with the same `_id` into the
same data stream with the `create` action: replays stay exactly-once. Logstash's
`http` input answers 429 when its queue is full; the sink backs off and, if that
lasts, raises `SinkUnavailable` so the spool takes the batch.
"""

from __future__ import annotations

import base64
import logging
import re

from ..config import LogstashConfig
from ..metrics import Metrics
from .base import Sink, SinkUnavailable
from .http import pool, post

log = logging.getLogger(__name__)

_ID = re.compile(rb'"_id":"([^"]+)"')


def to_logstash(lines: list[bytes], index: str) -> bytes:
    """Bulk lines (action + document) -> a JSON array of documents with their id and index in @metadata."""
    docs = []
    for line in lines:
        action, _, document = line.partition(b"\n")
        found = _ID.search(action)
        meta = b'{"@metadata":{"_id":"%s","_index":"%s"},' % (found.group(1) if found else b"", index.encode())
        docs.append(meta + document.rstrip(b"\n")[1:])
    return b"[" + b",".join(docs) + b"]"


class LogstashSink(Sink):
    name = "logstash"

    def __init__(self, config: LogstashConfig, index: str, metrics: Metrics, *, max_retries: int = 5, sleep=None):
        self.config = config
        self.url = config.url
        self.index = index
        self.metrics = metrics
        self.max_retries = max_retries
        self.http = pool(config.ca_file, config.verify_certs, config.request_timeout)
        self.headers = {"Content-Type": "application/json"}
        if config.username:
            token = base64.b64encode(f"{config.username}:{config.password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"
        self._sleep = sleep

    def write(self, lines: list[bytes], resent: bool = False) -> int:
        # Logstash cannot be asked what is already indexed: re-sent lines go as they are.
        if not lines:
            return 0
        body = to_logstash(lines, self.index)
        kwargs = {"sleep": self._sleep} if self._sleep else {}
        answer, retries = post(self.http, self.url, body, self.headers, max_retries=self.max_retries, **kwargs)
        if retries:
            self.metrics.retries.labels(self.name).inc(retries * len(lines))
        if not 200 <= answer.status < 300:
            raise SinkUnavailable(f"logstash answered {answer.status or 'nothing'}: {answer.reason}", lines)
        self.metrics.events_out.labels(self.name).inc(len(lines))
        self.metrics.bytes_out.labels(self.name).inc(len(body))
        return len(lines)

    def close(self) -> None:
        self.http.clear()
