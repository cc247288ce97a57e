"""Sink `logstash`: the same documents as the direct path, POSTed to Logstash's `http` input.

Each request is one JSON array. Every document carries `@metadata._id` and
`@metadata._index` (Logstash keeps `@metadata` out of the indexed document), so the
pipeline in `logstash/pipeline/shipper.conf` writes it with the same `_id` into the
same data stream with the `create` action: replays stay exactly-once. Logstash
answers for the whole request: 2xx acknowledges every document; 429 (its queue is
full) and 5xx mean "later"; no answer or any other status means unavailable.
"""

from __future__ import annotations

import base64
import logging

from ..config import LogstashConfig
from ..metrics import Metrics
from .base import Delivery, Documents, Sink
from .http import pool, post

log = logging.getLogger(__name__)


def to_logstash(documents: Documents, index: str) -> bytes:
    """A JSON array of the documents, each with its id and index in `@metadata`."""
    head, tail = b'{"@metadata":{"_id":"', b'","_index":"' + index.encode() + b'"},'
    return b"[" + b",".join([head + i + tail + body[1:] for i, body in zip(documents.ids, documents.bodies)]) + b"]"


class LogstashSink(Sink):
    name = "logstash"

    def __init__(self, config: LogstashConfig, metrics: Metrics):
        self.config = config
        self.url = config.url
        self.metrics = metrics
        self.http = pool(config.ca_file, config.verify_certs, config.request_timeout)
        self.headers = {"Content-Type": "application/json"}
        if config.username:
            token = base64.b64encode(f"{config.username}:{config.password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def send(self, documents: Documents, index: str, resent: bool = False) -> Delivery:
        # Logstash cannot be asked what is already indexed: re-sent documents go as they are.
        if not documents:
            return Delivery()
        body = to_logstash(documents, index)
        answer = post(self.http, self.url, body, self.headers)
        if 200 <= answer.status < 300:
            self.metrics.bytes_out.labels(self.name).inc(len(body))
            return Delivery(acknowledged=len(documents))
        everything = list(range(len(documents)))
        if answer.status == 429 or answer.status >= 500:
            return Delivery(retry=everything, retry_after=answer.retry_after)
        return Delivery(retry=everything, unavailable=f"logstash answered {answer.status or 'nothing'}: {answer.reason}")

    def close(self) -> None:
        self.http.clear()
