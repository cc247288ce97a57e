"""Exactly once across a rollover: `create` refuses a duplicate `_id` only within one backing
index, so events re-sent after a rollover (a spool replay of a batch Elasticsearch indexed but
whose answer was lost) would be indexed again. The shipper looks re-sent events up by id in
the whole data stream first, and skips those it finds.

The outage is made by a TCP relay between the shipper and the real Elasticsearch that, while
"losing answers", passes requests on and drops what comes back: the documents are indexed,
the shipper never hears so, and spools them.
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from shipper.es_setup import run_setup

from .shipper_proc import count, free_port, wait_for_count
from .test_secure_cluster import LOGS_ONLY


class AnswerLosingRelay:
    """127.0.0.1:<port> -> the bed's Elasticsearch; `lose_answers` drops every response."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.lose_answers = False
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, answers: bool) -> None:
        try:
            while data := source.recv(65536):
                if answers and self.lose_answers:
                    break  # the request was processed; its answer never arrives
                target.sendall(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self._closed = True
        self._server.close()


@pytest.fixture
def relay(es):
    url = es.transport.node_pool.get().base_url
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    relay = AnswerLosingRelay((host, int(port)))
    yield relay
    relay.close()


def test_a_replay_after_a_rollover_indexes_nothing_twice(es, relay, run_container, shippers):
    run_setup(es)
    shipper = shippers(f"elasticsearch.hosts=http://127.0.0.1:{relay.port}", "elasticsearch.request_timeout=3",
                       # live batches go straight to _bulk (only the replay is looked up by id)
                       "pipeline.resend_check_seconds=0", *LOGS_ONLY).start()
    index = shipper.index
    first = run_container(["sh", "-c", "seq 1 100 | sed 's/^/before-/'"], labels=shipper.labels)
    assert first.wait(timeout=60)["StatusCode"] == 0
    assert wait_for_count(es, index, 100, shipper=shipper) == 100

    # Outage: Elasticsearch indexes the next lines, the shipper never hears so and spools them.
    relay.lose_answers = True
    second = run_container(["sh", "-c", "seq 1 50 | sed 's/^/during-/'"], labels=shipper.labels)
    assert second.wait(timeout=60)["StatusCode"] == 0
    shipper.wait_for_metric("shipper_spooled_events_total", 50, timeout=90)
    assert shipper.metric("shipper_spooled_events_total") == 50, shipper.log_tail()
    assert count(es, index) == 150  # they are in, in the first backing index

    # A rollover while it lasts: the next `create` goes to a new backing index.
    rolled = es.indices.rollover(alias=index)
    assert rolled["rolled_over"], rolled

    relay.lose_answers = False
    shipper.wait_for_metric("shipper_replayed_events_total", 50, timeout=90)
    assert shipper.metric("shipper_replayed_events_total") == 50, shipper.log_tail()
    time.sleep(2)
    assert count(es, index) == 150, "a replayed event was indexed again in the new backing index"
    assert shipper.metric("shipper_resent_already_indexed_total", sink="elasticsearch") == 50
    assert count(es, rolled["new_index"]) == 0
    assert shipper.stop() == 0
