"""Stateful detectors, allowlists and throttling, on hand-made documents."""

import time

from shipper.config import ExceptionConfig, MiningConfig, PortScanConfig, load_config
from shipper.detect.policy import Allowlist, Throttle
from shipper.detect.stateful import NOTHING, MiningDetector, PortScanDetector
from shipper.model import Severity, Verdict
from shipper.sources.docker_events import _is_health_check


def connection(port, ip="127.0.0.1", state="ESTABLISHED", direction="egress"):
    return {"network": {"direction": direction}, "shipper": {"network": {"state": state}},
            "destination": {"ip": ip, "port": port},
            "container": {"name": "web"}}


def test_port_scan_fires_at_the_threshold_of_distinct_ports_only():
    detector = PortScanDetector(PortScanConfig(distinct_ports=5))
    assert all(detector.observe(connection(80), "network", "c1") == NOTHING for _ in range(20))  # one port, many times
    results = [detector.observe(connection(9000 + p), "network", "c1").verdicts for p in range(4)]
    assert results[:3] == [(), (), ()]  # 80 + 4 new ports = 5: the 4th new one crosses
    assert "5 distinct destination ports on 1 host(s)" in results[3][0].reason
    assert detector.observe(connection(9011, direction="ingress"), "network", "c2") == NOTHING  # served, not scanned
    assert detector.observe(connection(1), "processes", "c2") == NOTHING


def test_port_scan_counts_syn_sent():
    detector = PortScanDetector(PortScanConfig(distinct_ports=100, syn_sent=3))
    found = [detector.observe(connection(22, ip=f"10.0.0.{i}", state="SYN_SENT"), "network", "c").verdicts
             for i in range(3)]
    assert found[:2] == [(), ()] and "SYN_SENT" in found[2][0].reason


def stats(cores):
    return {"container": {"name": "m"}, "shipper": {"container": {"cpu": {"cores": cores}}}}


def test_mining_needs_sustained_cpu_and_a_signal():
    detector = MiningDetector(MiningConfig(cpu_cores=0.8, sustained_samples=2))
    assert detector.observe(stats(1.0), "stats", "c") == NOTHING
    assert detector.observe(stats(1.0), "stats", "c") == NOTHING  # no signal
    pool = {"network": {"direction": "egress"}, "destination": {"ip": "127.0.0.1", "port": 3333}}
    assert detector.observe(pool, "network", "c") == NOTHING
    assert detector.observe(stats(0.1), "stats", "c") == NOTHING  # low CPU resets the run
    assert detector.observe(stats(0.9), "stats", "c") == NOTHING
    verdict, = detector.observe(stats(0.9), "stats", "c").verdicts
    assert "pool port 3333" in verdict.reason and verdict.severity == Severity.CRITICAL
    assert detector.observe(stats(2.0), "stats", "other") == NOTHING  # signals are per container


def verdict(rule_id="r1"):
    return Verdict(rule_id, "Rule one", Severity.HIGH, "why")


def test_allowlist_needs_every_matcher_given():
    allow = Allowlist([ExceptionConfig(rules=["r1"], images=["registry/app*"], processes=["curl"])])
    doc = {"container": {"image": {"name": "registry/app-web"}}, "process": {"name": "curl"}}
    assert allow.allows(verdict(), doc) is not None
    assert allow.allows(verdict("r2"), doc) is None  # another rule
    assert allow.allows(verdict(), {**doc, "process": {"name": "wget"}}) is None
    labels = Allowlist([ExceptionConfig(labels=["team=ops*"])])
    assert labels.allows(verdict("any"), {"container": {"labels": {"team": "ops-eu"}}}) is not None
    assert labels.allows(verdict("any"), {"container": {"labels": {"team": "dev"}}}) is None
    assert Allowlist([ExceptionConfig(rules=["r1"])]).allows(verdict(), doc) is None  # no matcher: excuses nothing


def test_throttle_counts_what_it_suppressed():
    throttle = Throttle(0.3)
    assert throttle.admit(verdict(), "c1") is not None
    assert throttle.admit(verdict(), "c1") is None and throttle.admit(verdict(), "c1") is None
    assert throttle.admit(verdict(), "c2") is not None  # per container
    time.sleep(0.35)
    again = throttle.admit(verdict(), "c1")
    assert again.suppressed == 2 and "2 repeat(s) suppressed" in again.reason
    assert Throttle(0).admit(verdict(), "c1") is not None


def test_exceptions_in_config_are_checked_with_their_place(tmp_path):
    path = tmp_path / "shipper.yml"
    path.write_text("detection:\n  exceptions:\n    - rules: [r1]\n      images: [app]\n    - imagez: [x]\n")
    try:
        load_config(path)
    except Exception as exc:
        assert "shipper.yml:2" in str(exc) and "item 2: unknown key 'imagez'" in str(exc)
    else:
        raise AssertionError("a misspelt exception key was accepted")
    path.write_text("detection:\n  exceptions:\n    - rules: [r1]\n      images: [app]\n")
    assert load_config(path).detection.exceptions == [ExceptionConfig(rules=["r1"], images=["app"])]


def test_health_check_execs_are_recognised():
    assert _is_health_check(["CMD", "true"], ["true"])
    assert _is_health_check(["CMD-SHELL", "curl -f localhost"], ["/bin/sh", "-c", "curl -f localhost"])
    assert not _is_health_check(["CMD", "true"], ["id"])
    assert not _is_health_check([], ["true"]) and not _is_health_check(["NONE"], ["true"])


def test_miner_output_in_a_log_is_a_mining_signal_through_the_log_rule():
    from shipper.detect.engine import RulesEngine
    from shipper.model import Event

    engine = RulesEngine.from_paths([], detectors=[MiningDetector(MiningConfig(cpu_cores=0.8, sustained_samples=2))])
    line = Event("l", "t", "docker_logs", {"message": "use pool stratum+tcp://127.0.0.1:3333 xmrig/6.21"},
                 container_id="c")
    assert [v.rule_name for v in engine.judge(line).verdicts] == ["Crypto-miner output in a container's log"]
    sample = Event("s", "t", "stats", stats(0.9), container_id="c")
    assert not engine.judge(sample).verdicts
    verdict, = engine.judge(sample).verdicts
    assert verdict.rule_name == MiningDetector.info.title and "miner output in the container's log" in verdict.reason
    other = Event("s2", "t", "stats", stats(0.9), container_id="quiet")
    assert not engine.judge(other).verdicts and not engine.judge(other).verdicts  # no signal there
