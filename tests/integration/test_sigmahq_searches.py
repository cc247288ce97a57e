"""SigmaHQ's mapped rules as Kibana searches find, in the real Elasticsearch, exactly the events the
live evaluator flagged: the derived events of every process, file and network rule (and their near
misses) are judged by the engine, indexed as the shipper writes them (its documents, its mappings; in
a plain index, as the test bed's server has no data-stream API to delete a stream with), and searched
with each rule's generated query."""

from __future__ import annotations

import uuid

import pytest
from elasticsearch import helpers

from shipper.detect.engine import RulesEngine
from shipper.detect.sigma import load_rules
from shipper.document import DocumentWriter
from shipper.es_setup import run_setup
from shipper.kibana import rule_query
from shipper.model import Event, event_id
from tests.sigma_derivation import BASE, CATEGORIES, CORPUS, derive, judged_rules

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"SigmaHQ corpus not found at {CORPUS}")


def test_each_rules_search_finds_what_the_evaluator_flagged(es):
    rules, problems = load_rules([CORPUS])
    assert problems == []
    judged = judged_rules(rules)
    engine = RulesEngine.from_paths([CORPUS])
    events = []
    for rule in judged:
        positive = derive(rule, True, BASE[rule.sigma.logsource.category])
        negative = derive(rule, False, positive)
        for kind, doc in (("positive", positive), ("negative", negative)):
            event = Event(event_id("sigmahq", rule.id, kind), "2026-11-29T00:00:00.000Z",
                          CATEGORIES[rule.sigma.logsource.category], doc)
            events.append(engine.judge(event))
    run_setup(es)
    mappings = es.cluster.get_component_template(name="shipper@mappings")["component_templates"][0]
    index = f"shipper-test-sigmahq-{uuid.uuid4().hex[:10]}"
    es.indices.create(index=index, mappings=mappings["component_template"]["template"]["mappings"])
    try:
        writer = DocumentWriter("default")
        indexed, errors = helpers.bulk(es, ({"_op_type": "create", "_index": index, "_id": event.id,
                                            "_source": writer.document(event)} for event in events))
        assert (indexed, errors) == (len(events), [])
        es.indices.refresh(index=index)
        disagreements = []
        for rule in judged:
            flagged = {event.id for event in events if rule.id in {v.rule_id for v in event.verdicts}}
            query = rule_query(rule)
            found = {hit["_id"] for hit in helpers.scan(es, index=index, size=1000,
                                                         query={"query": {"query_string": {"query": query}}})}
            if found != flagged:
                disagreements.append(f"{rule.path.name}: search only {sorted(found - flagged)}, "
                                     f"evaluator only {sorted(flagged - found)}\n    {query}")
        assert disagreements == [], "\n".join(disagreements)
    finally:
        es.options(ignore_status=404).indices.delete(index=index)
