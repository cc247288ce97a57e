"""The Elasticsearch sink and the delivery policy against real servers: per-item outcomes."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from pathlib import Path

import orjson
import pytest
from elasticsearch import Elasticsearch

from shipper import kinds
from shipper.config import ElasticsearchConfig
from shipper.delivery import Deliverer
from shipper.document import DocumentWriter, deadletter_stream, events_stream
from shipper.es_setup import run_setup, template_names
from shipper.metrics import Metrics
from shipper.model import Event, event_id
from shipper.retry import Backoff
from shipper.sinks.base import Delivery, Documents
from shipper.sinks.elasticsearch import ElasticsearchSink
from shipper.sinks.spool import Spool

from .shipper_proc import ShipperProcess, count, wait_for_count

TESTBED = Path(__file__).resolve().parents[2] / "scripts" / "testbed.sh"


def make_events(n: int, tag: str = "sink-test") -> list[Event]:
    return [
        Event(id=event_id(tag, i), timestamp="2026-11-28T00:00:00.000000001Z", source="test",
              fields={"message": f"line {i}", "shipper": {"log": {"offset": i}}})
        for i in range(n)
    ]


def test_refused_item_goes_to_deadletter_and_the_rest_is_indexed(es, tmp_path):
    run_setup(es)
    namespace = f"t{uuid.uuid4().hex[:10]}"
    metrics = Metrics()
    sink = ElasticsearchSink(ElasticsearchConfig(namespace=namespace), metrics)
    deliverer = Deliverer(sink, Spool(tmp_path / "spool", 1 << 20), metrics, namespace)
    writer = DocumentWriter(namespace)
    bad = Event(id=event_id("sink-test", "bad"), timestamp="2026-11-28T00:00:01Z", source="test",
                fields={"message": "mapping conflict", "shipper": {"log": {"offset": "not-a-number"}}})
    documents = writer.encode([*make_events(10), bad])

    deliverer.ship(documents)
    assert deliverer.spool.empty
    assert count(es, events_stream(namespace)) == 10
    assert metrics.value("shipper_deadletters_total", sink="elasticsearch") == 1

    es.indices.refresh(index=deadletter_stream(namespace))
    dead = es.search(index=deadletter_stream(namespace), query={"match_all": {}})["hits"]["hits"]
    assert len(dead) == 1
    doc = dead[0]["_source"]
    assert dead[0]["_id"] == bad.id
    assert orjson.loads(doc["event"]["original"]) == writer.document(bad)
    assert doc["error"]["code"] == "400"
    assert "offset" in doc["error"]["message"]
    assert doc["shipper"]["deadletter"]["index"] == events_stream(namespace)

    again = sink.send(documents, events_stream(namespace))  # a replay: nothing is indexed twice
    assert (again.acknowledged, again.duplicates, len(again.refused), again.retry) == (10, 10, 1, [])
    deliverer.ship(documents)
    assert count(es, events_stream(namespace)) == 10
    assert count(es, deadletter_stream(namespace)) == 1
    # the second ship: the ten already there, and the dead letter already there too
    assert metrics.value("shipper_duplicates_avoided_total", sink="elasticsearch") == 10 + 1


# ------------------------------------------------------------------ per-item 429 from a real server

class Recording(ElasticsearchSink):
    """The real sink, keeping what each call sent and what it answered."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[list[bytes], Delivery]] = []
        self._lock = threading.Lock()

    def send(self, documents: Documents, index: str, resent: bool = False) -> Delivery:
        delivery = super().send(documents, index, resent)
        with self._lock:
            self.calls.append((list(documents.ids), delivery))
        return delivery


@pytest.fixture(scope="module")
def tight_es():
    """A node with one write thread and one queue slot, started for these tests and stopped after."""
    if os.environ.get("ES_URL"):
        pytest.skip("ES_URL points at a cluster of your own; the tight test node is local only")
    started = subprocess.run([str(TESTBED), "tight-up"], capture_output=True, text=True, timeout=300)
    assert started.returncode == 0, started.stderr[-2000:]
    client = Elasticsearch("http://127.0.0.1:9202", request_timeout=60)
    try:
        yield client
    finally:
        client.close()
        subprocess.run([str(TESTBED), "tight-down"], capture_output=True, timeout=120)


def test_a_shipper_on_a_cluster_never_set_up_installs_the_templates_and_ships_dotted_labels(
        tight_es, tmp_path, run_container):
    """`shipper run` before `shipper setup`: without the templates, compose's labels (`...project` beside
    `...project.working_dir`) map as conflicting objects and every document would be dead-lettered."""
    # first in this module: the tight node starts empty (tight-down removes its data)
    for name in template_names():
        tight_es.options(ignore_status=404).indices.delete_index_template(name=name)
    shipper = ShipperProcess(tmp_path, "elasticsearch.hosts=http://127.0.0.1:9202", "sources.processes.enabled=false",
                             "sources.files.enabled=false", "sources.stats.enabled=false").start()
    try:
        labels = {**shipper.labels, "com.docker.compose.project": "shop",
                  "com.docker.compose.project.working_dir": "/srv/shop"}
        run_container(["sh", "-c", "for i in $(seq 1 50); do echo line $i; done"], labels=labels)
        query = {"term": {"event.dataset": kinds.DOCKER_LOGS.dataset}}
        assert wait_for_count(tight_es, shipper.index, 50, query, shipper=shipper) == 50
        assert count(tight_es, deadletter_stream(shipper.namespace)) == 0
        assert all(tight_es.indices.exists_index_template(name=name).body for name in template_names())
        assert "the index templates were missing" in shipper.log_path.read_text()
    finally:
        assert shipper.stop() == 0
        shipper.close()


def test_items_the_server_rejects_with_429_are_retried_alone_and_indexed_once(tight_es, tmp_path):
    run_setup(tight_es)
    namespace = f"tight{uuid.uuid4().hex[:8]}"
    index = events_stream(namespace)
    # Several primaries: each bulk becomes one write task per shard, and the pool of one
    # thread and one queue slot rejects some of them while it runs another.
    tight_es.indices.put_index_template(name=f"tight-{namespace}", index_patterns=[index], priority=500,
                                        data_stream={}, composed_of=["shipper@mappings"],
                                        template={"settings": {"number_of_shards": 6, "number_of_replicas": 0}})
    writers, per_writer, batch = 4, 3000, 500
    metrics = Metrics()
    sink = Recording(ElasticsearchConfig(hosts=("http://127.0.0.1:9202",), namespace=namespace), metrics,
                     max_docs=batch)
    documents = [DocumentWriter(namespace).encode(make_events(per_writer, f"w{n}")) for n in range(writers)]

    def ship(number: int) -> None:
        deliverer = Deliverer(sink, Spool(tmp_path / f"spool{number}", 1 << 30), metrics, namespace,
                              max_retries=50, backoff=Backoff(base=0.05, cap=0.5))
        for start in range(0, per_writer, batch):
            deliverer.ship(documents[number].take(range(start, start + batch)))
        assert deliverer.spool.empty

    threads = [threading.Thread(target=ship, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)

    partial = [(ids, d) for ids, d in sink.calls if d.retry and d.acknowledged]
    assert partial, "the server never rejected only part of a bulk: the test proves nothing"
    # Exactly the rejected items went out again: each call after a partial rejection
    # of these ids is made of precisely the ids at the rejected positions.
    retried_ids = [[ids[p] for p in d.retry] for ids, d in sink.calls if d.retry]
    sent_again = {tuple(ids) for ids, _ in sink.calls}
    assert all(tuple(ids) in sent_again for ids in retried_ids)
    assert metrics.value("shipper_item_retries_total", sink="elasticsearch") == sum(map(len, retried_ids))
    assert count(tight_es, index) == writers * per_writer  # every document once
    assert metrics.value("shipper_duplicates_avoided_total", sink="elasticsearch") == 0

