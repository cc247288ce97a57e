"""The index template and the documents the shipper builds are ECS 8.11 (the version they
declare): every field is ECS with its type or lives under shipper.*, and the categorization
fields take ECS's allowed values. The scenario suite checks every document it produced the
same way (tests/scenarios/test_scenarios.py)."""

from __future__ import annotations

import orjson

from shipper.document import DocumentWriter, deadletter_document
from shipper.ecs import ECS_VERSION, relocate
from shipper.es_setup import EVENT_FIELDS
from shipper.model import Event
from tests.ecs_check import categorization_problems, document_problems, template_problems


def test_the_index_template_is_ecs():
    assert template_problems(EVENT_FIELDS) == []


def test_the_checks_can_fail():
    assert template_problems({"container.security.user": "keyword", "event.severity": "keyword"}) != []
    assert document_problems({"@timestamp": "2026-01-01T00:00:00Z", "stream": "stdout", "event": {"kind": "event"}})
    assert categorization_problems({"event": {"kind": "event", "category": ["process"], "type": ["creation"]}})
    assert categorization_problems({"event": {"kind": "log"}})


def test_custom_fields_move_under_shipper():
    fields = relocate({"stream": "stdout", "log": {"offset": 7, "file": {"path": "/x"}},
                       "process": {"pid": 1, "host_pid": 4242, "upper_layer": True},
                       "container": {"cpu": {"usage": 0.5, "cores": 2.0}, "memory": {"usage": 1024, "limit": 4096}},
                       "docker": {"signal": "9"}})
    assert fields == {"log": {"file": {"path": "/x"}}, "process": {"pid": 1},
                      "container": {"cpu": {"usage": 0.5}},
                      "shipper": {"log": {"stream": "stdout", "offset": 7},
                                  "process": {"host_pid": 4242, "upper_layer": True},
                                  "container": {"cpu": {"cores": 2.0}, "memory": {"bytes": 1024, "limit": 4096}},
                                  "docker": {"signal": "9"}}}
    assert relocate(orjson.loads(orjson.dumps(fields))) == fields  # a second pass changes nothing


def test_a_log_line_and_a_dead_letter_are_ecs():
    line = Event(id="1", timestamp="2026-01-01T00:00:00.000000001Z", source="docker_logs", container_id="c1",
                 fields=relocate({"message": "hello", "stream": "stdout", "log": {"offset": 0, "file": {"path": "/l"}},
                                  "event": {"kind": "event", "dataset": "shipper.docker_logs", "module": "docker"}}))
    doc = DocumentWriter("default").document(line)
    assert doc["ecs"]["version"] == ECS_VERSION
    assert document_problems(doc, "log line") == []
    dead = deadletter_document(orjson.dumps(doc), 400, {"type": "mapper_parsing_exception", "reason": "bad"},
                               "default", "logs-shipper.events-default")
    assert document_problems(dead, "dead letter") == []


def test_container_metadata_joins_under_the_events_own_fields():
    class Meta:
        ecs = {"id": "c1", "name": "web", "restart_count": 2,
               "security": {"privileged": False, "user": "root"}}

    start = Event(id="2", timestamp="2026-01-01T00:00:00Z", source="docker_events", container_id="c1",
                  fields=relocate({"event": {"kind": "event", "category": ["process"], "type": ["start"]},
                                   "container": {"security": {"privileged": True, "mounts": ["/var/run/docker.sock"]}}}))
    doc = DocumentWriter("default", containers=lambda _id: Meta).document(start)
    assert doc["container"] == {"id": "c1", "name": "web"}
    assert doc["shipper"]["container"] == {"restart_count": 2, "security": {
        "privileged": True, "user": "root", "mounts": ["/var/run/docker.sock"]}}
    assert Meta.ecs["security"] == {"privileged": False, "user": "root"}  # the shared metadata is untouched
    assert document_problems(doc, "start") == []
