"""Trivy reports from Trivy's own integration tests, turned into ECS vulnerability events joined to containers."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.detect.engine import RulesEngine
from shipper.sources.vulnerabilities import ReportError, RunningContainer, read_report, report_events

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpora" / "trivy"
RULE = "Fixable critical or high vulnerability in a running container"

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"the Trivy corpus {CORPUS} is absent")


def report(name: str) -> dict:
    return read_report(CORPUS / name)


def test_findings_become_ecs_events_per_container():
    buster = report("debian-buster.json")
    image_id = buster["Metadata"]["ImageID"]
    running = [RunningContainer("c1", image_id, frozenset()), RunningContainer("c2", image_id, frozenset()),
               RunningContainer("other", "sha256:" + "0" * 64, frozenset())]
    events = report_events(buster, CORPUS / "debian-buster.json", running, 0.0)
    findings = sum(len(r.get("Vulnerabilities") or []) for r in buster["Results"])
    assert len(events) == 2 * findings and {e.container_id for e in events} == {"c1", "c2"}
    critical = next(e for e in events if e.fields["vulnerability"]["id"] == "CVE-2019-18224")
    assert critical.fields["vulnerability"]["severity"] == "CRITICAL"
    assert critical.fields["package"] == {"name": "libidn2-0", "version": "2.0.5-1", "type": "debian",
                                          "reference": critical.fields["package"]["reference"]}
    assert critical.fields["shipper"]["vulnerability"]["fixed_version"] == "2.0.5-1+deb10u1"
    assert len({e.id for e in events}) == len(events)  # one document per finding and container
    again = report_events(buster, CORPUS / "debian-buster.json", running, 60.0)
    assert {e.id for e in again} == {e.id for e in events}  # read again later: the same documents


def test_joined_by_repo_digest():
    alpine = report("alpine-310.json")
    alpine["Metadata"]["RepoDigests"] = ["ghcr.io/x/alpine@sha256:" + "d" * 64]
    running = [RunningContainer("c1", "sha256:" + "e" * 64, frozenset({"mirror.example/alpine@sha256:" + "d" * 64}))]
    assert {e.container_id for e in report_events(alpine, Path("a.json"), running, 0.0)} == {"c1"}


def test_without_a_running_container_the_finding_stands_alone():
    events = report_events(report("alpine-310.json"), Path("a.json"), [], 0.0)
    assert events and all(e.container_id is None for e in events)


def test_rule_fires_for_fixable_critical_or_high_in_a_running_image():
    engine = RulesEngine.from_paths([], lambda cid: None)
    fired = {}
    for name in ("debian-buster.json", "busybox-with-lockfile.json", "alpine-310.json"):
        data = report(name)
        running = [RunningContainer("c1", data["Metadata"]["ImageID"], frozenset())]
        for event in report_events(data, CORPUS / name, running, 0.0):
            verdicts = {v.rule_name for v in engine.judge(event).verdicts}
            fired[(event.fields["vulnerability"]["id"], event.fields["package"]["name"])] = RULE in verdicts
    assert fired[("CVE-2019-18224", "libidn2-0")]  # critical, fixed in 2.0.5-1+deb10u1
    assert fired[("CVE-2019-15542", "ammonia")]  # high, fixed in >= 2.1.0
    assert not fired[("CVE-2019-18276", "bash")]  # low, no fix
    assert not fired[("CVE-2019-1549", "libcrypto1.1")]  # medium
    lone = report_events(report("debian-buster.json"), Path("d.json"), [], 0.0)
    assert not any(engine.judge(e).verdicts for e in lone)  # nothing runs it: no alert


def test_other_json_is_refused(tmp_path):
    path = tmp_path / "sbom.json"
    path.write_text('{"bomFormat": "CycloneDX"}')
    with pytest.raises(ReportError, match="not a Trivy JSON report"):
        read_report(path)


def test_every_finding_alerts_even_with_throttling_on():
    """Throttling is for streams of repeats; two CVEs in one container are two findings, not a repeat."""
    from shipper.detect.policy import Throttle

    engine = RulesEngine.from_paths([], lambda cid: None, throttle=Throttle(60))
    data = report("busybox-with-lockfile.json")
    data["Results"][0]["Vulnerabilities"].append({**data["Results"][0]["Vulnerabilities"][0], "VulnerabilityID": "CVE-0000-0001"})
    running = [RunningContainer("c1", data["Metadata"]["ImageID"], frozenset())]
    alerts = [e for e in report_events(data, Path("b.json"), running, 0.0) if engine.judge(e).verdicts]
    assert len(alerts) == 2
