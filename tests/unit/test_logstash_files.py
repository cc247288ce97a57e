"""The Logstash files parse, a broken pipeline is rejected, every field the pipelines name
exists in the index template's mapping, and the settings that keep the Logstash path's
promises (documents unchanged, no blocked workers, nothing acknowledged lost, refused
documents dead-lettered) are there."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from logstash_pipeline_parser import Pipeline
from logstash_pipeline_parser.tree import ParseError

from shipper.es_setup import EVENT_FIELDS

LOGSTASH = Path(__file__).resolve().parents[2] / "logstash"
CONFS = sorted((LOGSTASH / "pipeline").glob("*.conf"))
SHIPPER_CONF = LOGSTASH / "pipeline" / "shipper.conf"
FIELD_REFERENCE = re.compile(r"((?:\[[A-Za-z_@][\w@.-]*\])+)")


def test_there_is_a_pipeline():
    assert [p.name for p in CONFS] == ["deadletter.conf", "shipper.conf"]


@pytest.mark.parametrize("path", CONFS, ids=lambda p: p.name)
def test_pipeline_parses(path):
    tree = Pipeline(path.read_text()).parse()
    assert [section[0] for section in tree] == ["input", "filter", "output"]


def plugins(tree, kind: str) -> dict[str, dict]:
    """Every plugin of a section with an `id`, conditionals included: id -> options."""
    found: dict[str, dict] = {}

    def is_option(item) -> bool:
        return isinstance(item, list) and len(item) == 2 and isinstance(item[0], str) and isinstance(item[1], list)

    def walk(node):
        if not isinstance(node, list):
            return
        if is_option(node) and node[1] and all(is_option(o) for o in node[1]):
            options = {key: value[0] if value else None for key, value in node[1]}
            if "id" in options:
                found[options["id"]] = {"plugin": node[0], **options}
                return
        for child in node:
            walk(child)

    walk(next(section[1] for section in tree if section[0] == kind))
    return found


def parsed(name: str):
    return Pipeline((LOGSTASH / "pipeline" / name).read_text()).parse()


def test_the_http_input_adds_nothing_to_the_documents():
    http = plugins(parsed("shipper.conf"), "input")["shipper_in"]
    assert http["ecs_compatibility"] == "disabled"  # no host.ip, url.*, http.*, user_agent.*
    assert http["additional_codecs"] == []  # our codec for application/json too
    assert http["codec"] == ["json", [["ecs_compatibility", ["disabled"]]]]  # no event.original
    assert http["remote_host_target_field"].startswith("[@metadata]")
    assert http["request_headers_target_field"].startswith("[@metadata]")
    filters = plugins(parsed("shipper.conf"), "filter")
    assert filters["shipper_drop_version"]["remove_field"] == ["@version"]
    assert not any("add_tag" in f and f["plugin"] == "mutate" for f in filters.values())


def test_the_webhook_cannot_block_a_worker_and_sends_valid_json():
    tree = parsed("shipper.conf")
    webhook = plugins(tree, "output")["shipper_webhook"]
    assert webhook["retry_failed"] is False and webhook["automatic_retries"] == 0
    assert webhook["format"] == "json" and "message" not in webhook  # the plugin encodes the values
    assert plugins(tree, "filter")["shipper_webhook_throttle"]["period"] == 60
    assert "${SHIPPER_WEBHOOK_ENABLED:false}" in (LOGSTASH / "pipeline" / "shipper.conf").read_text()


def test_refused_documents_reach_the_deadletter_stream_and_409s_stay_quiet():
    es = plugins(parsed("shipper.conf"), "output")["shipper_es"]
    assert es["silence_errors_in_log"] == ["version_conflict_engine_exception"]
    settings = yaml.safe_load((LOGSTASH / "config" / "logstash.yml").read_text())
    assert settings["dead_letter_queue.enable"] is True
    dlq = plugins(parsed("deadletter.conf"), "input")["shipper_dlq_in"]
    assert dlq["pipeline_id"] == "shipper" and str(dlq["path"]).startswith("/usr/share/logstash/data/")
    script = str(plugins(parsed("deadletter.conf"), "filter")["shipper_deadletter_document"]["path"])
    assert (LOGSTASH / "scripts" / Path(script).name).is_file()
    assert plugins(parsed("deadletter.conf"), "output")["shipper_deadletter_es"]["action"] == "create"


def test_a_broken_pipeline_is_rejected():
    broken = SHIPPER_CONF.read_text().replace('port => 8080\n', 'port => 8080\n  }\n', 1)  # an extra brace
    with pytest.raises(ParseError):
        Pipeline(broken).parse()
    with pytest.raises(ParseError):
        Pipeline(SHIPPER_CONF.read_text().replace('action => "create"', 'action => "create', 1)).parse()


def test_settings_files_are_yaml():
    settings = yaml.safe_load((LOGSTASH / "config" / "logstash.yml").read_text())
    assert settings["queue.type"] == "persisted"
    assert settings["queue.checkpoint.writes"] == 1  # what the input acknowledged is on disk
    assert "api.http.host" in settings and "http.host" not in settings
    pipelines = yaml.safe_load((LOGSTASH / "config" / "pipelines.yml").read_text())
    assert [p["path.config"].rsplit("/", 1)[1] for p in pipelines] == [p.name for p in reversed(CONFS)]


def test_every_field_the_pipeline_names_is_mapped():
    text = "\n".join(p.read_text() for p in CONFS)
    fields = {".".join(re.findall(r"\[([^\]]+)\]", ref)) for ref in FIELD_REFERENCE.findall(text)}
    fields = {f for f in fields if not f.startswith("@metadata")}
    assert fields, "no field references found: the pattern is wrong"
    assert sorted(fields - set(EVENT_FIELDS)) == []
