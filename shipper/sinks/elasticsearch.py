"""Sink `elasticsearch`: bulk `create` with deterministic ids, per-item outcomes.

- 201: indexed. 409: already there (a replay), counted as a duplicate avoided.
- 429 and 5xx: only those items are retried, with jittered exponential backoff.
- Any other 4xx: refused for good; the item goes to the dead-letter stream with
  the original document escaped and the error, the rest of the batch is indexed.
- No answer at all (connection refused, timeout, 5xx/429 for the whole request,
  bad credentials): `SinkUnavailable`, so the caller spools the batch.

`create` refuses a duplicate `_id` only within one backing index: after a rollover, an
event indexed before it would be indexed again. So lines that may have been delivered
before (`resent`: a spool replay, a re-read after a start) are first looked up by id in
the whole data stream (an `ids` query, needs `read`), and those found are skipped.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import elastic_transport
import orjson
from elasticsearch import ApiError, Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from ..config import ElasticsearchConfig
from ..document import deadletter_document, deadletter_stream, events_stream
from ..metrics import Metrics
from .base import Sink, SinkUnavailable

log = logging.getLogger(__name__)

BULK_FILTER = "errors,items.*.status,items.*.error"


def make_client(config: ElasticsearchConfig) -> Elasticsearch:
    kwargs: dict[str, Any] = {
        "request_timeout": config.request_timeout,
        "max_retries": max(1, len(config.hosts) - 1),  # try another node, not the same one again
        "retry_on_timeout": True,
        "serializer": OrjsonSerializer(),
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


def _line_id(line: bytes) -> str | None:
    action, _, _ = line.partition(b"\n")
    try:
        return next(iter(orjson.loads(action).values())).get("_id")
    except (orjson.JSONDecodeError, StopIteration, AttributeError):
        return None


class _Overloaded(Exception):
    """The cluster answered 429/503 to the whole request: back off and send it again."""


def _chunks(lines: list[bytes], max_docs: int, max_bytes: int):
    if len(lines) <= max_docs and sum(map(len, lines)) <= max_bytes:
        yield lines  # the usual case, without a Python loop over every line
        return
    chunk: list[bytes] = []
    size = 0
    for line in lines:
        if chunk and (len(chunk) >= max_docs or size + len(line) > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(line)
        size += len(line)
    if chunk:
        yield chunk


@dataclass
class BulkOutcome:
    indexed: int = 0
    duplicates: int = 0
    deadletters: int = 0
    retried: int = 0


class ElasticsearchSink(Sink):
    name = "elasticsearch"

    def __init__(self, config: ElasticsearchConfig, metrics: Metrics, *, max_retries: int = 5,
                 backoff: float = 0.5, max_docs: int = 5000, max_bytes: int = 8 << 20,
                 client: Elasticsearch | None = None):
        self.client = client or make_client(config)
        self.namespace = config.namespace
        self.index = events_stream(config.namespace)
        self.deadletter_index = deadletter_stream(config.namespace)
        self.metrics = metrics
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_docs = max_docs
        self.max_bytes = max_bytes
        self._last_refusal = ""
        self.check_resent = True  # off once the cluster says we may not read (403)

    @classmethod
    def from_config(cls, config, metrics: Metrics) -> "ElasticsearchSink":
        """The sink as `shipper run` and `shipper spool replay` use it (a whole `Config`)."""
        return cls(config.elasticsearch, metrics, max_retries=config.pipeline.max_retries,
                   max_docs=config.pipeline.batch_max_docs, max_bytes=config.pipeline.batch_max_bytes)

    def write(self, lines: list[bytes], resent: bool = False) -> BulkOutcome:
        """Index `lines` (each one action line + one document line). Raises SinkUnavailable.

        Requests are cut at `max_bytes`/`max_docs`: one huge request would trip the
        cluster's indexing-pressure limit (429 for the whole request) every time.
        """
        outcome = BulkOutcome()
        if resent and self.check_resent:
            lines = self._not_yet_indexed(lines, outcome)
            if not lines:
                return outcome
        chunks = list(_chunks(lines, self.max_docs, self.max_bytes))
        for number, chunk in enumerate(chunks):
            try:
                self._write_chunk(chunk, outcome)
            except SinkUnavailable as exc:
                unsent = [line for later in chunks[number + 1:] for line in later]
                exc.lines = (exc.lines if exc.lines is not None else chunk) + unsent
                raise
        return outcome

    def _not_yet_indexed(self, lines: list[bytes], outcome: BulkOutcome) -> list[bytes]:
        """The lines whose `_id` is in no backing index of the stream yet."""
        ids = [_line_id(line) for line in lines]
        found: set[str] = set()
        try:
            for start in range(0, len(ids), ID_LOOKUP_CHUNK):
                chunk = [i for i in ids[start:start + ID_LOOKUP_CHUNK] if i]
                answer = self.client.search(index=self.index, query={"ids": {"values": chunk}}, size=len(chunk),
                                            source=False, filter_path="hits.hits._id",
                                            ignore_unavailable=True, allow_no_indices=True).body
                found.update(hit["_id"] for hit in answer.get("hits", {}).get("hits", []))
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
            raise SinkUnavailable(f"no answer from Elasticsearch: {exc.message}", lines) from exc
        except ApiError as exc:
            if exc.status_code == 403:
                self.check_resent = False
                log.warning("elasticsearch: cannot look up re-sent events by id (403: no `read` on %s), so after a "
                            "rollover a replayed event may be indexed twice; grant `read` to close that", self.index)
                return lines
            if exc.status_code == 401:
                self._refused(exc)
            if exc.status_code in (401, 429) or exc.status_code >= 500:
                raise SinkUnavailable(f"Elasticsearch answered {exc.status_code}: {exc.message}", lines) from exc
            log.warning("elasticsearch: looking up re-sent events by id failed (%s: %s); sending them as they are",
                        exc.status_code, _error_reason(exc))
            return lines
        if not found:
            return lines
        outcome.duplicates += len(found)
        self.metrics.events_out.labels(self.name).inc(len(found))  # acknowledged, as a 409 is
        self.metrics.resent_found.labels(self.name).inc(len(found))
        self.metrics.duplicates.labels(self.name).inc(len(found))
        return [line for line, i in zip(lines, ids) if i not in found]

    def _write_chunk(self, lines: list[bytes], outcome: BulkOutcome) -> None:
        pending = lines
        for attempt in range(self.max_retries + 1):
            try:
                retry = self._bulk_once(pending, outcome)
            except _Overloaded:
                retry = pending  # the whole request got 429/503: same treatment as items
            except SinkUnavailable as exc:
                exc.lines = pending if exc.lines is None else exc.lines
                raise
            if not retry:
                return
            if attempt == self.max_retries:
                break
            outcome.retried += len(retry)
            self.metrics.retries.labels(self.name).inc(len(retry))
            time.sleep(min(30.0, self.backoff * 2**attempt) * random.uniform(0.5, 1.5))
            pending = retry
        raise SinkUnavailable(f"{len(retry)} items still refused with 429/5xx after {self.max_retries} retries", retry)

    def _bulk_once(self, lines: list[bytes], outcome: BulkOutcome) -> list[bytes]:
        """One bulk request; returns the lines to retry."""
        body = b"".join(lines)
        started = time.monotonic()
        response = self._request(body, self.index)
        self.metrics.batch_seconds.labels(self.name).observe(time.monotonic() - started)
        self.metrics.bytes_out.labels(self.name).inc(len(body))
        if not response.get("errors"):
            outcome.indexed += len(lines)
            self.metrics.events_out.labels(self.name).inc(len(lines))
            return []
        retry: list[bytes] = []
        refused: list[tuple[bytes, int, dict]] = []
        items = response["items"]
        if len(items) != len(lines):
            raise SinkUnavailable(f"bulk answered {len(items)} items for {len(lines)} documents")
        for line, item in zip(lines, items):
            result = next(iter(item.values()))
            status = result["status"]
            if status < 300:
                outcome.indexed += 1
            elif status == 409:
                outcome.duplicates += 1
            elif status == 429 or status >= 500:
                retry.append(line)
            else:
                refused.append((line, status, result.get("error") or {}))
        self.metrics.events_out.labels(self.name).inc(len(lines) - len(retry) - len(refused))
        self.metrics.duplicates.labels(self.name).inc(outcome.duplicates)
        if refused:
            try:
                self._deadletter(refused)
            except SinkUnavailable as exc:
                # Sent again later they will be refused again and dead-lettered then.
                exc.lines = retry + [line for line, _, _ in refused]
                raise
            outcome.deadletters += len(refused)
        return retry

    def _request(self, body: bytes, index: str) -> dict[str, Any]:
        try:
            response = self.client.bulk(operations=body, index=index, filter_path=BULK_FILTER).body
            self._last_refusal = ""
            return response
        except (elastic_transport.ConnectionError, elastic_transport.ConnectionTimeout) as exc:
            raise SinkUnavailable(f"no answer from Elasticsearch: {exc.message}") from exc
        except ApiError as exc:
            if exc.status_code in (429, 503):
                raise _Overloaded() from exc
            # A whole-request error: down, or our credentials/privileges are wrong.
            # None of these is the documents' fault, so they wait in the spool.
            if exc.status_code in (401, 403):
                self._refused(exc)
            raise SinkUnavailable(f"Elasticsearch answered {exc.status_code}: {exc.message}") from exc

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

    def _deadletter(self, refused: list[tuple[bytes, int, dict]]) -> None:
        lines = []
        for line, status, error in refused:
            action, _, original = line.partition(b"\n")
            doc = deadletter_document(original.rstrip(b"\n"), status, error, self.namespace, self.index)
            lines.append(action + b"\n" + orjson.dumps(doc) + b"\n")
            log.warning("elasticsearch: document refused, sent to the dead-letter stream",
                        extra={"status": status, "error_type": error.get("type"), "reason": str(error.get("reason"))[:300]})
        response = self._request(b"".join(lines), self.deadletter_index)
        self.metrics.deadletters.labels(self.name).inc(len(lines))
        if response.get("errors"):
            bad = [next(iter(i.values())) for i in response["items"] if next(iter(i.values()))["status"] not in (201, 409)]
            if bad:
                raise SinkUnavailable(f"dead-letter stream refused {len(bad)} documents: {bad[0].get('error')}")

    def close(self) -> None:
        self.client.close()
