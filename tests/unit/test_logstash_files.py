"""The Logstash files parse, a broken pipeline is rejected, and every field the pipeline
names exists in the index template's mapping."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from logstash_pipeline_parser import Pipeline

from shipper.es_setup import EVENT_FIELDS

LOGSTASH = Path(__file__).resolve().parents[2] / "logstash"
CONFS = sorted((LOGSTASH / "pipeline").glob("*.conf"))
FIELD_REFERENCE = re.compile(r"((?:\[[A-Za-z_@][\w@.-]*\])+)")


def test_there_is_a_pipeline():
    assert [p.name for p in CONFS] == ["shipper.conf"]


@pytest.mark.parametrize("path", CONFS, ids=lambda p: p.name)
def test_pipeline_parses(path):
    tree = Pipeline(path.read_text()).parse()
    assert [section[0] for section in tree] == ["input", "filter", "output"]


def test_a_broken_pipeline_is_rejected():
    broken = CONFS[0].read_text().replace("codec => json\n", "codec => json\n  }\n", 1)  # an extra brace
    with pytest.raises(Exception):
        Pipeline(broken).parse()
    with pytest.raises(Exception):
        Pipeline(CONFS[0].read_text().replace('action => "create"', 'action => "create', 1)).parse()


def test_settings_files_are_yaml():
    settings = yaml.safe_load((LOGSTASH / "config" / "logstash.yml").read_text())
    assert settings["queue.type"] == "persisted"
    pipelines = yaml.safe_load((LOGSTASH / "config" / "pipelines.yml").read_text())
    assert pipelines[0]["path.config"].endswith("/pipeline/shipper.conf")


def test_every_field_the_pipeline_names_is_mapped():
    text = "\n".join(p.read_text() for p in CONFS)
    fields = {".".join(re.findall(r"\[([^\]]+)\]", ref)) for ref in FIELD_REFERENCE.findall(text)}
    fields = {f for f in fields if not f.startswith("@metadata")}
    assert fields, "no field references found: the pattern is wrong"
    assert sorted(fields - set(EVENT_FIELDS)) == []
