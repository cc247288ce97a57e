"""Image provenance facts, and the image_config rules judging them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shipper.detect.engine import RulesEngine
from shipper.images import ImagePolicy, image_facts, is_pinned, registry_allowed, registry_of
from shipper.model import Event

NOW = datetime(2026, 11, 29, tzinfo=UTC)


def attrs(user="", health=None, age_days=10, digests=()):
    created = (NOW - timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%S.123456789Z")
    config = {"User": user}
    if health is not None:
        config["Healthcheck"] = {"Test": health}
    return {"Id": "sha256:" + "a" * 64, "Created": created, "Config": config, "RepoDigests": list(digests)}


@pytest.mark.parametrize("reference, registry", [
    ("busybox:1", "docker.io"), ("library/busybox", "docker.io"), ("ghcr.io/org/app:2", "ghcr.io"),
    ("localhost/app", "localhost"), ("registry:5000/app@sha256:" + "b" * 64, "registry:5000"),
    ("sha256:" + "c" * 64, None),
])
def test_registry_by_dockers_rule(reference, registry):
    assert registry_of(reference) == registry


def test_pinned_only_by_content():
    assert is_pinned("app@sha256:" + "b" * 64) and is_pinned("sha256:" + "c" * 64)
    assert not is_pinned("app:1.2") and not is_pinned("app")


def test_allowed_registries():
    assert registry_allowed("ghcr.io", [])
    assert registry_allowed("docker.io", ["index.docker.io"])
    assert not registry_allowed("ghcr.io", ["registry.example.com"])


@pytest.fixture(scope="module")
def engine():
    return RulesEngine.from_paths([])


def fired(engine, facts) -> set[str]:
    event = Event("id", "2026-11-29T00:00:00Z", "docker_events",
                  {"event": {"action": "pull"}, "shipper": {"image": facts}})
    return {v.rule_name for v in engine.judge(event).verdicts}


def test_rules_judge_the_facts(engine):
    policy = ImagePolicy(("registry.example.com",), max_age_days=90)
    sloppy = fired(engine, image_facts("docker.io/library/app:1", attrs(age_days=400), policy, NOW))
    assert sloppy == {"Image referenced by tag, not digest", "Image from a registry that is not allowed",
                      "Image older than the allowed age", "Image runs as root by default", "Image has no HEALTHCHECK"}
    tidy = image_facts("registry.example.com/app@sha256:" + "b" * 64,
                       attrs(user="1000", health=["CMD", "true"], age_days=30), policy, NOW)
    assert fired(engine, tidy) == set()
    assert tidy["age_days"] == pytest.approx(30, abs=0.1)
    # HEALTHCHECK NONE switches an inherited check off: that is no health check
    assert "Image has no HEALTHCHECK" in fired(engine, image_facts("sha256:" + "a" * 64, attrs(user="1000", health=["NONE"]),
                                                                    ImagePolicy(), NOW))


def test_an_image_gone_still_judges_its_name(engine):
    facts = image_facts("app:1", None, ImagePolicy(), NOW)
    assert fired(engine, facts) == {"Image referenced by tag, not digest"}


def test_image_findings_on_a_start_are_allowlisted_like_any_rule():
    from shipper.config import ExceptionConfig
    from shipper.detect.policy import Allowlist

    engine = RulesEngine.from_paths([], allowlist=Allowlist([ExceptionConfig(
        rules=["Image has no HEALTHCHECK"], images=["registry.example.com/batch/*"], reason="jobs, not services")]))
    facts = image_facts("registry.example.com/batch/report:3", attrs(user="1000"), ImagePolicy(), NOW)

    def start(image: str) -> set[str]:
        event = Event("id", "2026-11-29T00:00:00Z", "docker_events",
                      {"event": {"action": "start"}, "container": {"image": {"name": image, "tag": ["3"]}}, "shipper": {"image": facts}})
        return {v.rule_name for v in engine.judge(event).verdicts}

    assert start("registry.example.com/batch/report") == {"Image referenced by tag, not digest"}
    assert start("registry.example.com/web") == {"Image referenced by tag, not digest", "Image has no HEALTHCHECK"}
