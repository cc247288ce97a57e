"""The Elasticsearch sink against the real server: per-item outcomes."""

import uuid

import orjson

from shipper.config import ElasticsearchConfig
from shipper.document import DocumentWriter, deadletter_stream, events_stream
from shipper.es_setup import run_setup
from shipper.metrics import Metrics
from shipper.model import Event, event_id
from shipper.sinks.elasticsearch import ElasticsearchSink

from .shipper_proc import count


def make_events(n: int) -> list[Event]:
    return [
        Event(id=event_id("sink-test", i), timestamp="2026-11-28T00:00:00.000000001Z", source="test",
              fields={"message": f"line {i}", "shipper": {"log": {"offset": i}}})
        for i in range(n)
    ]


def test_refused_item_goes_to_deadletter_and_the_rest_is_indexed(es):
    run_setup(es)
    namespace = f"t{uuid.uuid4().hex[:10]}"
    metrics = Metrics()
    sink = ElasticsearchSink(ElasticsearchConfig(namespace=namespace), metrics)
    writer = DocumentWriter(namespace)
    bad = Event(id=event_id("sink-test", "bad"), timestamp="2026-11-28T00:00:01Z", source="test",
                fields={"message": "mapping conflict", "shipper": {"log": {"offset": "not-a-number"}}})
    lines = writer.bulk_lines([*make_events(10), bad])

    outcome = sink.write(lines)
    assert (outcome.indexed, outcome.duplicates, outcome.deadletters) == (10, 0, 1)
    assert count(es, events_stream(namespace)) == 10

    es.indices.refresh(index=deadletter_stream(namespace))
    dead = es.search(index=deadletter_stream(namespace), query={"match_all": {}})["hits"]["hits"]
    assert len(dead) == 1
    doc = dead[0]["_source"]
    assert dead[0]["_id"] == bad.id
    assert orjson.loads(doc["event"]["original"]) == writer.document(bad)
    assert doc["error"]["code"] == "400"
    assert "offset" in doc["error"]["message"]
    assert doc["shipper"]["deadletter"]["index"] == events_stream(namespace)

    again = sink.write(lines)  # a replay: nothing is indexed twice
    assert (again.indexed, again.duplicates) == (0, 10)
    assert count(es, events_stream(namespace)) == 10
    assert count(es, deadletter_stream(namespace)) == 1
    assert metrics.value("shipper_duplicates_avoided_total", sink="elasticsearch") == 10
