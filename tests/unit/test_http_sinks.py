"""The logstash and webhook sinks against real HTTP servers on 127.0.0.1: 429/500 answers,
backoff, throttling, and the webhook URL kept out of the logs."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shipper.config import LogstashConfig, WebhookConfig
from shipper.delivery import Deliverer
from shipper.document import DocumentWriter
from shipper.metrics import Metrics
from shipper.model import Event, Severity, Verdict
from shipper.retry import Backoff
from shipper.sinks.logstash import LogstashSink
from shipper.sinks.spool import Spool
from shipper.sinks.webhook import WebhookNotifier


class Endpoint:
    """An HTTP server that answers each POST with the next status of `script` (then 200)."""

    def __init__(self, *script: int):
        self.script = list(script)
        self.bodies: list[bytes] = []
        self.statuses: list[int] = []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            disable_nagle_algorithm = True

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status = endpoint.script.pop(0) if endpoint.script else 200
                endpoint.statuses.append(status)
                if status == 200:
                    endpoint.bodies.append(body)
                self.send_response(status)
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/T000/SECRET-TOKEN"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    made = []

    def make(*script):
        made.append(Endpoint(*script))
        return made[-1]

    yield make
    for e in made:
        e.close()


def events(n: int, verdict: Verdict | None = None, container: str = "c1") -> list[Event]:
    return [Event(f"id-{i}", "2026-11-28T00:00:00.000Z", "docker_logs", {"message": f"line {i}"}, container,
                  verdicts=(verdict,) if verdict else ()) for i in range(n)]


def no_sleep(_seconds):
    pass


def deliverer_to(sink, tmp_path, metrics, max_retries=3):
    return Deliverer(sink, Spool(tmp_path / "spool", 1 << 20), metrics, "default", max_retries=max_retries,
                     backoff=Backoff(base=0.001, cap=0.001))


def test_logstash_gets_the_same_documents_with_id_and_index_in_metadata(endpoint, tmp_path):
    server = endpoint(429, 500)  # one overload and one server error, then accepted
    writer = DocumentWriter("default")
    metrics = Metrics()
    deliverer = deliverer_to(LogstashSink(LogstashConfig(url=server.url), metrics), tmp_path, metrics)
    documents = writer.encode(events(3))
    deliverer.ship(documents)
    assert deliverer.spool.empty
    assert server.statuses == [429, 500, 200]
    sent = json.loads(server.bodies[0])
    assert [d["@metadata"]["_id"] for d in sent] == ["id-0", "id-1", "id-2"]
    assert {d["@metadata"]["_index"] for d in sent} == {"logs-shipper.events-default"}
    direct = [json.loads(body) for body in documents.bodies]
    assert [{k: v for k, v in d.items() if k != "@metadata"} for d in sent] == direct  # same documents either way
    assert metrics.value("shipper_item_retries_total", sink="logstash") == 6
    assert metrics.value("shipper_events_out_total", sink="logstash") == 3


def test_logstash_that_stays_overloaded_makes_the_batch_wait_in_the_spool(endpoint, tmp_path):
    server = endpoint(429, 429, 429)
    metrics = Metrics()
    deliverer = deliverer_to(LogstashSink(LogstashConfig(url=server.url), metrics), tmp_path, metrics, max_retries=2)
    documents = DocumentWriter("default").encode(events(2))
    deliverer.ship(documents)
    assert not deliverer.sink_up and metrics.value("shipper_spooled_events_total") == 2
    assert deliverer.replay_one().error is None  # it recovered: the spool is sent
    assert deliverer.spool.empty and deliverer.sink_up
    assert [d["@metadata"]["_id"] for d in json.loads(server.bodies[0])] == ["id-0", "id-1"]


def test_logstash_unreachable_is_unavailable():
    sink = LogstashSink(LogstashConfig(url="http://127.0.0.1:9/", request_timeout=2), Metrics())
    delivery = sink.send(DocumentWriter("default").encode(events(1)), "idx")
    assert delivery.unavailable and delivery.retry == [0] and delivery.acknowledged == 0


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_webhook_sends_alerts_above_the_minimum_throttles_and_summarises(endpoint, caplog):
    server = endpoint(500)  # the first attempt fails and is retried
    config = WebhookConfig(enabled=True, url=server.url, min_severity="high", throttle_seconds=0.5,
                           link_template="https://kibana.example/app/discover#/?q=rule.id:{rule_id}", max_retries=2)
    metrics = Metrics()
    notifier = WebhookNotifier(config, metrics, sleep=no_sleep).start()
    high = Verdict("r-high", "Reverse shell", Severity.CRITICAL, "shell on a socket")
    low = Verdict("r-low", "Root container", Severity.LOW, "runs as root")
    with caplog.at_level(logging.DEBUG):
        notifier.offer(events(1, low) + events(2))  # below the minimum, and no verdict: nothing sent
        notifier.offer(events(4, high))  # one message, three suppressed
        notifier.offer(events(1, high, container="c2"))  # another container: its own message
        wait_for(lambda: metrics.value("shipper_notifications_total", outcome="suppressed") == 3)
        wait_for(lambda: len(server.bodies) == 2)
        time.sleep(0.6)
        notifier.offer(events(1, high))  # after the window: a message that says what was suppressed
        wait_for(lambda: len(server.bodies) == 3)
        notifier.close()
    first, _, third = (json.loads(b) for b in server.bodies)
    assert server.statuses[:2] == [500, 200]
    assert first["text"] == f"[CRITICAL] Reverse shell in container c1 on {notifier.host}"
    fields = {f["title"]: f["value"] for f in first["attachments"][0]["fields"]}
    assert fields["Rule"] == "Reverse shell (r-high)" and fields["Kibana"].endswith("rule.id:r-high")
    assert "Suppressed" not in fields
    later = {f["title"]: f["value"] for f in third["attachments"][0]["fields"]}
    assert later["Suppressed"].startswith("3 more alert(s)")
    assert metrics.value("shipper_notifications_total", outcome="sent") == 3
    assert "SECRET-TOKEN" not in caplog.text


def test_webhook_that_keeps_failing_is_counted_and_never_blocks(endpoint, caplog):
    server = endpoint(*[500] * 20)
    config = WebhookConfig(enabled=True, url=server.url, throttle_seconds=0, max_retries=1, queue_size=2)
    metrics = Metrics()
    notifier = WebhookNotifier(config, metrics, sleep=lambda s: time.sleep(0.2)).start()
    verdict = Verdict("r", "Rule", Severity.HIGH, "why")
    started = time.monotonic()
    notifier.offer(events(50, verdict))
    assert time.monotonic() - started < 0.5  # the sources' threads never wait for the webhook
    wait_for(lambda: metrics.value("shipper_notifications_total", outcome="failed") >= 1)
    notifier.close()
    assert metrics.value("shipper_notifications_total", outcome="dropped") >= 40
    assert "SECRET-TOKEN" not in caplog.text
