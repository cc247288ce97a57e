"""Smoke tests that prove the test bed: real containers, a real Elasticsearch."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from elasticsearch import helpers

LINES = 1000


def test_container_lines_round_trip_through_elasticsearch(run_container, es, es_index):
    container = run_container(
        ["sh", "-c", f'i=1; while [ $i -le {LINES} ]; do echo "smoke-line-$i"; i=$((i+1)); done']
    )
    assert container.wait(timeout=60)["StatusCode"] == 0

    raw = container.logs(stdout=True, stderr=False, timestamps=True).decode()
    lines = [line.split(" ", 1) for line in raw.splitlines()]
    assert [text for _, text in lines] == [f"smoke-line-{i}" for i in range(1, LINES + 1)]

    es.indices.create(index=es_index, mappings={"properties": {"message": {"type": "keyword"}, "@timestamp": {"type": "date_nanos"}}})
    actions = (
        {"_index": es_index, "_op_type": "create", "_id": f"{container.id}-{n}", "@timestamp": ts, "message": text}
        for n, (ts, text) in enumerate(lines)
    )
    indexed, errors = helpers.bulk(es, actions, chunk_size=250)
    assert (indexed, errors) == (LINES, [])
    es.indices.refresh(index=es_index)

    searches = []
    for i in range(1, LINES + 1):
        searches += [{"index": es_index}, {"query": {"term": {"message": f"smoke-line-{i}"}}, "size": 2}]
    responses = es.msearch(searches=searches)["responses"]
    found = [[hit["_source"]["message"] for hit in r["hits"]["hits"]] for r in responses]
    assert found == [[f"smoke-line-{i}"] for i in range(1, LINES + 1)]


def test_engine_reports_start_and_exec_events(run_container, docker_client):
    since = datetime.now(UTC)
    container = run_container(["sleep", "300"])
    exit_code, output = container.exec_run(["echo", "exec-smoke"])
    assert (exit_code, output) == (0, b"exec-smoke\n")

    until = time.time() + 1
    events = docker_client.events(
        since=since, until=until, decode=True, filters={"container": container.id}
    )
    actions = [event["Action"] for event in events]
    assert "start" in actions
    assert "exec_start: echo exec-smoke" in actions
