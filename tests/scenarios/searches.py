"""Run every generated Kibana search against the real Elasticsearch and compare with the live evaluator.

For each rule: the documents its saved search returns must be exactly the documents
of its category that the rule's live matcher accepts (evaluated on each indexed
document, which holds what the evaluator saw: the event with its container joined).
The documents that carry the rule's verdict must be among them (fewer only where
throttling held a repeat back). For each category search: the documents it returns
must be exactly those a plain Python predicate picks.
"""

from __future__ import annotations

import json

from elasticsearch import Elasticsearch, helpers

from shipper.detect.engine import BUILTIN_RULES, judged_categories
from shipper.detect.sigma import load_rules
from shipper.kibana import category_searches, rule_query
from shipper.kinds import SOURCE_OF_DATASET
from shipper.model import Event


def _ids(es: Elasticsearch, index: str, lucene: str) -> set[str]:
    query = {"query_string": {"query": lucene}}
    return {hit["_id"] for hit in helpers.scan(es, index=index, query={"query": query}, size=2000)}


def _source_of(doc: dict) -> str:
    dataset = doc.get("event", {}).get("dataset", "")
    return SOURCE_OF_DATASET.get(dataset, dataset)


def _flagged(doc: dict) -> set[str]:
    return {v["rule"]["id"] for v in doc.get("shipper", {}).get("verdicts", [])}


def check_searches(es: Elasticsearch, index: str) -> list[str]:
    """Every disagreement, as a readable line; empty when all searches agree."""
    es.indices.refresh(index=index)
    docs = {hit["_id"]: hit["_source"] for hit in helpers.scan(es, index=index, query={"query": {"match_all": {}}},
                                                                size=2000)}
    rules, problems = load_rules([BUILTIN_RULES])
    assert not problems
    problems_found = []
    for rule in rules:
        category = rule.sigma.logsource.category
        expected = {doc_id for doc_id, doc in docs.items()
                    if category in judged_categories(Event(doc_id, "", _source_of(doc), doc)) and rule.matches(doc)}
        found = _ids(es, index, rule_query(rule))
        if found != expected:
            problems_found.append(f"{rule.path.stem}: search found {len(found)}, evaluator {len(expected)}; "
                                  f"only in search: {sorted(found - expected)[:3]}, only evaluator: "
                                  f"{sorted(expected - found)[:3]}\n    query: {rule_query(rule)}")
        flagged = {doc_id for doc_id, doc in docs.items() if rule.id in _flagged(doc)}
        if not flagged <= found:
            problems_found.append(f"{rule.path.stem}: {len(flagged - found)} flagged documents the search misses")
    predicates = _category_predicates(rules)
    for search in category_searches(rules):
        if search.view != "shipper-events":
            continue
        key = search.title.removeprefix("Shipper: ")
        expected = {doc_id for doc_id, doc in docs.items() if predicates[key](doc)}
        found = _ids(es, index, search.query)
        if found != expected:
            problems_found.append(f"category {key!r}: search found {len(found)}, predicate {len(expected)}")
    return problems_found


def _category_predicates(rules) -> dict:
    from shipper.detect.stateful import AnomalyDetector, MiningDetector, PortScanDetector

    by_name = {rule.path.stem: rule.id for rule in rules}

    def alert(doc):
        return doc.get("event", {}).get("kind") == "alert"

    def dataset(doc):
        return doc.get("event", {}).get("dataset")

    def action(doc):
        return doc.get("event", {}).get("action")

    scans = {PortScanDetector.info.id, by_name["log_port_scanner"]}
    mining = {MiningDetector.info.id, by_name["proc_crypto_miner"], by_name["log_crypto_miner"]}
    return {
        "All alerts": alert,
        "Process alerts": lambda d: alert(d) and dataset(d) == "shipper.processes",
        "Network and scans": lambda d: alert(d) and (dataset(d) == "shipper.network" or bool(_flagged(d) & scans)),
        "Crypto-mining": lambda d: alert(d) and bool(_flagged(d) & mining),
        "File tampering": lambda d: alert(d) and dataset(d) == "shipper.files",
        "Container misconfiguration": lambda d: alert(d) and dataset(d) == "shipper.docker_events" and action(d) == "start",
        "Exec sessions": lambda d: dataset(d) == "shipper.docker_events" and action(d) == "exec_start",
        "Resource anomalies": lambda d: alert(d) and AnomalyDetector.info.id in _flagged(d),
        "Host configuration": lambda d: alert(d) and dataset(d) == "shipper.host_config",
        "Vulnerable running images": lambda d: (
            dataset(d) == "shipper.vulnerability" and d["vulnerability"]["severity"] in ("CRITICAL", "HIGH")
            and d["shipper"]["vulnerability"]["fix_available"] and bool(d.get("container", {}).get("id"))),
    }


if __name__ == "__main__":
    import sys

    print(json.dumps(check_searches(Elasticsearch("http://127.0.0.1:9200"), sys.argv[1]), indent=2))
