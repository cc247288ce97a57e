"""Event kinds are declared once (shipper/kinds.py); what lists them elsewhere must agree."""

import re
from pathlib import Path

import pytest

from shipper import kinds
from shipper.detect.engine import category_of, judged_categories
from shipper.es_setup import EVENT_FIELDS
from shipper.model import Event
from shipper.sources.docker_events import DockerEventsSource
from shipper.sources.docker_logs import LOG_EVENT, DockerLogsSource
from shipper.sources.files import FilesSource
from shipper.sources.host_config import HostConfigSource
from shipper.sources.processes import ProcessesSource
from shipper.sources.stats import StatsSource
from shipper.sources.vulnerabilities import VulnerabilitiesSource

ROOT = Path(__file__).resolve().parents[2]
CATEGORY_NAMES = sorted(kinds.CATEGORY)


def test_every_source_class_and_the_log_dataset_are_declared_kinds():
    classes = (DockerLogsSource, DockerEventsSource, FilesSource, ProcessesSource, StatsSource, HostConfigSource,
               VulnerabilitiesSource)
    # the processes source also emits the network events (and file events from audit records)
    assert sorted({c.name for c in classes} | {kinds.NETWORK.name}) == sorted(kinds.SOURCE)
    assert LOG_EVENT["dataset"] == kinds.DOCKER_LOGS.dataset


def test_readme_lists_every_source_and_category():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("### What the shipper watches", 1)[1].split("\n\n", 2)[1]
    listed = [re.match(r"\| `([a-z_]+)`", row).group(1) for row in table.splitlines()[2:]]
    assert sorted(listed) == sorted(kinds.SOURCE)
    sentence = readme.split("A rule's `logsource.category` says what it looks at:", 1)[1].split("Only the rules", 1)[0]
    assert sorted(set(re.findall(r"`([a-z_]+)`", sentence))) == CATEGORY_NAMES


def test_example_config_lists_every_category():
    text = (ROOT / "shipper.example.yml").read_text()
    block = text.split("# logsource.category says what a rule looks at, one of:\n", 1)[1]
    names = []
    for line in block.splitlines():
        if not line.startswith("  #   "):
            break
        names += [name.strip() for name in line[len("  #   "):].split(",") if name.strip()]
    assert sorted(names) == CATEGORY_NAMES


@pytest.mark.parametrize("source, action, category", [
    ("docker_logs", None, "container_log"), ("docker_events", "start", "container_config"),
    ("docker_events", "exec_start", "container_exec"), ("docker_events", "pull", "image_config"),
    ("docker_events", "die", "container_event"), ("processes", "exec", "process_creation"),
    ("network", "listen", "network_connection"), ("files", "creation", "file_event"), ("stats", "stats", "container_stats"),
    ("host_config", None, "host_config"), ("vulnerability", "vulnerability-found", "vulnerability"),
    ("somewhere_new", None, "somewhere_new"),
])
def test_an_events_category_comes_from_its_source_and_action(source, action, category):
    event = Event("e", "t", source, {"event": {"action": action}} if action else {})
    assert category_of(event) == category


def test_exec_and_start_events_are_judged_by_more_than_their_own_rules():
    assert judged_categories(Event("e", "t", "docker_events", {"event": {"action": "exec_start"}})) == (
        "container_exec", "process_creation")
    assert judged_categories(Event("e", "t", "docker_events", {"event": {"action": "start"}})) == (
        "container_config", "image_config")


def test_kibana_scopes_follow_the_declaration():
    assert kinds.scope(kinds.PROCESS_CREATION) == (
        "event.dataset:shipper.processes OR (event.dataset:shipper.docker_events AND event.action:exec_start)")
    assert kinds.scope(kinds.CONTAINER_EVENT) == (
        "event.dataset:shipper.docker_events AND NOT event.action:(start OR exec_start OR pull)")
    assert kinds.scope(kinds.IMAGE_CONFIG) == "event.dataset:shipper.docker_events AND event.action:(start OR pull)"


def test_every_column_and_field_of_a_kind_is_in_the_template():
    for category in kinds.CATEGORIES:
        assert set(category.columns) <= set(EVENT_FIELDS), category.name
    assert set(kinds.template_fields()) <= set(EVENT_FIELDS)


def test_two_sources_cannot_map_one_field_two_ways():
    one, other = kinds.Source("one", {"x.y": "long"}), kinds.Source("other", {"x.y": "keyword"})
    with pytest.raises(ValueError, match="x.y"):
        kinds.template_fields((one, other))
    assert kinds.template_fields((one, kinds.Source("same", {"x.y": "long"}))) == {"x.y": "long"}
