"""Sink `elasticsearch`: bulk `create` with deterministic ids, an outcome per item.

- 201: acknowledged. 409: already there (a replay): acknowledged, a duplicate.
- 429 and 5xx items, and a whole request answered 429/503: to retry.
- Any other 4xx item: refused (the pipeline dead-letters it).
- No answer at all (connection refused, timeout, another 5xx for the whole
  request, bad credentials or privileges): `unavailable`, so the pipeline spools.

`create` refuses a duplicate `_id` only within one backing index: after a rollover, an
event indexed before it would be indexed again. So lines that may have been delivered
before (`resent`: a spool replay, a re-read after a start) are first looked up by id in
the whole data stream (an `ids` query, needs `read`), and those found are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from itertools import chain, repeat
from typing import Any

import elastic_transport
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.serializer import NdjsonSerializer, OrjsonSerializer

from ..config import Config, ElasticsearchConfig
from ..errors import AccessDenied
from ..metrics import Metrics
from .base import Delivery, Documents, Refusal, Sink

log = logging.getLogger(__name__)

BULK_FILTER = "errors,items.*.status,items.*.error"


class _ReadyNdjson(NdjsonSerializer):
    """A bulk body we joined ourselves goes out as it is: the stock serializer copies it twice."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes) and data.endswith(b"\n"):
            return data
        return super().dumps(data)


def make_client(config: ElasticsearchConfig) -> Elasticsearch:
    kwargs: dict[str, Any] = {
        "request_timeout": config.request_timeout,
        "max_retries": max(1, len(config.hosts) - 1),  # try another node, not the same one again
        "retry_on_timeout": True,
        "serializers": {"application/json": OrjsonSerializer(), "application/x-ndjson": _ReadyNdjson()},
        "verify_certs": config.verify_certs,
    }
    if config.api_key:
        kwargs["api_key"] = config.api_key
    elif config.username:
        kwargs["basic_auth"] = (config.username, config.password or "")
    if config.ca_file:
        kwargs["ca_certs"] = config.ca_file
    if not config.verify_certs:
        log.warning("elasticsearch: certificate verification is OFF; any server can impersonate the cluster")
        kwargs["ssl_show_warn"] = False
    return Elasticsearch(list(config.hosts), **kwargs)


def _error_reason(exc: ApiError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error")
    if isinstance(error, dict):
        return str(error.get("reason") or error.get("type") or exc.message)[:300]
    return str(error or exc.message)[:300]


ID_LOOKUP_CHUNK = 5000  # ids per search (under index.max_result_window)


class _NoAnswer(Exception):
    """The request as a whole failed: `overloaded` (429/503: back off) or not (spool)."""

    def __init__(self, reason: str, overloaded: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.overloaded = overloaded


def _chunks(documents: Documents, max_docs: int, max_bytes: int) -> list[tuple[int, int]]:
    """[start, end) position ranges, each under both limits (a chunk has at least one document)."""
    bodies = documents.bodies
    if len(bodies) <= max_docs and sum(map(len, bodies)) + 40 * len(bodies) <= max_bytes:
        return [(0, len(bodies))]  # the usual case, without a Python loop over every document
    ranges, start, size = [], 0, 0
    for position, body in enumerate(bodies):
        cost = len(body) + len(documents.ids[position]) + 24
        if position > start and (position - start >= max_docs or size + cost > max_bytes):
            ranges.append((start, position))
            start, size = position, 0
        size += cost
    if start < len(bodies):
        ranges.append((start, len(bodies)))
    return ranges


def bulk_body(ids: list[bytes], bodies: list[bytes]) -> bytes:
    """`{"create":{"_id":...}}` and the document, each on its line: one join, each document copied once."""
    return b"".join(chain.from_iterable(zip(repeat(b'{"create":{"_id":"'), ids, repeat(b'"}}\n'), bodies,
                                            repeat(b"\n"), strict=False)))


class ElasticsearchSink(Sink):
    name = "elasticsearch"

    def __init__(self, config: ElasticsearchConfig, metrics: Metrics, *, max_docs: int = 2000,
                 max_bytes: int = 8 << 20, client: Elasticsearch | None = None):
        self.client = client or make_client(config)
        self.metrics = metrics
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self._last_refusal = ""
        self.check_resent = True  # off once the cluster says we may not read (403)
        self._templates_checked = False

    @classmethod
    def from_config(cls, config: Config, metrics: Metrics) -> ElasticsearchSink:
        """The sink as `shipper run` and `shipper spool replay` use it (a whole `Config`)."""
        return cls(config.elasticsearch, metrics, max_docs=config.pipeline.batch_max_docs,
                   max_bytes=config.pipeline.batch_max_bytes)

    def send(self, documents: Documents, index: str, resent: bool = False) -> Delivery:
        """Bulk-create `documents` in `index`, cut into requests under `max_docs`/`max_bytes`
        (one huge request would trip the cluster's indexing-pressure limit every time)."""
        delivery = Delivery()
        self._ensure_templates()
        positions: Sequence[int] = range(len(documents))
        if resent and self.check_resent:
            try:
                positions = self._not_yet_indexed(documents, index, delivery)
            except _NoAnswer as exc:
                delivery.retry = list(positions)
                delivery.unavailable = exc.reason
                return delivery
            documents = documents.take(positions)
        ranges = _chunks(documents, self.max_docs, self.max_bytes)
        for start, end in ranges:
            try:
                self._bulk(documents, start, end, index, delivery, positions)
            except _NoAnswer as exc:
                delivery.retry.extend(positions[p] for p in range(start, len(documents)))
                delivery.unavailable = None if exc.overloaded else exc.reason
                break
        return delivery

    def _ensure_templates(self) -> None:
        """Once, the first time the cluster answers: install the index templates if `shipper setup` never ran.
        Without them every field is mapped dynamically, and labels such as compose's `...project` beside
        `...project.working_dir` are refused as conflicting objects (every such document dead-lettered)."""
        if self._templates_checked:
            return
        from ..es_setup import TEMPLATES_PRIVILEGE, run_setup, template_names  # it imports the detectors

        try:
            if all(self.client.indices.exists_index_template(name=name).body for name in template_names()):
                self._templates_checked = True
                return
            report = run_setup(self.client)
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout):
            return  # asked again with the next batch
        except (ApiError, AccessDenied) as exc:
            self._templates_checked = True
            reason = str(exc) if isinstance(exc, AccessDenied) else f"{exc.status_code}: {_error_reason(exc)}"
            log.info("elasticsearch: could not check or install the index templates (%s); if `shipper setup` "
                     "has not been run with a user that has %s, fields are mapped dynamically",
                     reason, TEMPLATES_PRIVILEGE)
            return
        self._templates_checked = True
        log.warning("elasticsearch: the index templates were missing (`shipper setup` never ran against this "
                    "cluster); installed them", extra={"installed": report.installed})

    def _not_yet_indexed(self, documents: Documents, index: str, delivery: Delivery) -> list[int]:
        """Positions whose `_id` is in no backing index of the stream yet; the others are acknowledged."""
        ids = [i.decode() for i in documents.ids]
        found: set[str] = set()
        try:
            for start in range(0, len(ids), ID_LOOKUP_CHUNK):
                chunk = ids[start:start + ID_LOOKUP_CHUNK]
                answer = self.client.search(index=index, query={"ids": {"values": chunk}}, size=len(chunk),
                                            source=False, filter_path="hits.hits._id",
                                            ignore_unavailable=True, allow_no_indices=True).body
                found.update(hit["_id"] for hit in answer.get("hits", {}).get("hits", []))
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
            raise _NoAnswer(f"no answer from Elasticsearch: {exc.message}") from exc
        except ApiError as exc:
            if exc.status_code == 403:
                self.check_resent = False
                log.warning("elasticsearch: cannot look up re-sent events by id (403: no `read` on %s), so after a "
                            "rollover a replayed event may be indexed twice; grant `read` to close that", index)
                return list(range(len(ids)))
            if exc.status_code == 401:
                self._refused(exc)
            if exc.status_code in (401, 429) or exc.status_code >= 500:
                raise _NoAnswer(f"Elasticsearch answered {exc.status_code}: {exc.message}",
                                overloaded=exc.status_code in (429, 503)) from exc
            log.warning("elasticsearch: looking up re-sent events by id failed (%s: %s); sending them as they are",
                        exc.status_code, _error_reason(exc))
            return list(range(len(ids)))
        if found:
            delivery.acknowledged += len(found)
            delivery.duplicates += len(found)
            self.metrics.resent_found.labels(self.name).inc(len(found))
        return [position for position, i in enumerate(ids) if i not in found]

    def _bulk(self, documents: Documents, start: int, end: int, index: str, delivery: Delivery,
              positions: Sequence[int]) -> None:
        """One bulk request for documents[start:end]; `positions` maps them back to what `send` was handed."""
        body = bulk_body(documents.ids[start:end], documents.bodies[start:end])
        started = time.monotonic()
        response = self._request(body, index)
        self.metrics.batch_seconds.labels(self.name).observe(time.monotonic() - started)
        self.metrics.bytes_out.labels(self.name).inc(len(body))
        if not response.get("errors"):
            delivery.acknowledged += end - start
            return
        items = response["items"]
        if len(items) != end - start:
            raise _NoAnswer(f"bulk answered {len(items)} items for {end - start} documents")
        for position, item in zip(range(start, end), items):
            result = next(iter(item.values()))
            status = result["status"]
            if status < 300:
                delivery.acknowledged += 1
            elif status == 409:
                delivery.acknowledged += 1
                delivery.duplicates += 1
            elif status == 429 or status >= 500:
                delivery.retry.append(positions[position])
            else:
                delivery.refused.append(Refusal(positions[position], status, result.get("error") or {}))

    def _request(self, body: bytes, index: str) -> dict[str, Any]:
        try:
            # the client sends bytes as they are: the body is already NDJSON
            response: dict[str, Any] = self.client.bulk(operations=body, index=index,  # type: ignore[arg-type]
                                                        filter_path=BULK_FILTER).body
            self._last_refusal = ""
            return response
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
            raise _NoAnswer(f"no answer from Elasticsearch: {exc.message}") from exc
        except ApiError as exc:
            # A whole-request error: overloaded, down, or our credentials/privileges are
            # wrong. None of these is the documents' fault.
            if exc.status_code in (401, 403):
                self._refused(exc)
            raise _NoAnswer(f"Elasticsearch answered {exc.status_code}: {exc.message}",
                            overloaded=exc.status_code in (429, 503)) from exc

    def _refused(self, exc: ApiError) -> None:
        """One line saying why, once per cause (a spool replay retries it every few seconds)."""
        reason = _error_reason(exc)
        if exc.status_code == 401:
            what = "refused our credentials: the API key or password is wrong, expired or revoked"
        else:
            what = "refused the request: the user or API key lacks a privilege"
        message = f"elasticsearch: {what} ({exc.status_code}: {reason}); events are spooled until that is fixed"
        if message != self._last_refusal:
            log.error(message)
            self._last_refusal = message

    def close(self) -> None:
        self.client.close()
