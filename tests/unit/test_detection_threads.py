"""Detection shared by every source thread: rules and detectors changed while events are judged,
detectors that add to an event without touching it, and a model trained without holding up the sources.

Ordering is asserted with events and threads, never with timings; the timeouts only keep a
broken build from hanging the suite.
"""

from __future__ import annotations

import threading

from shipper.config import AnomalyConfig
from shipper.detect.engine import RulesEngine
from shipper.detect.sigma import load_rules
from shipper.detect.stateful import (
    NOTHING,
    AnomalyDetector,
    Detector,
    DetectorInfo,
    Observation,
)
from shipper.model import Event, Severity
from shipper.sources.base import Batch

WAIT = 60  # seconds before a test gives up on a thread that should have finished long before

RULE = """\
title: {title}
id: {id}
status: test
level: high
logsource:
  product: linux
  category: process_creation
detection:
  selection:
    process.name: worker
  condition: selection
"""
STEADY_ID = "00000000-0000-4000-8000-000000000001"
TOGGLED_ID = "00000000-0000-4000-8000-000000000002"


def _rules(tmp_path):
    for number, (title, rule_id) in enumerate((("Steady rule", STEADY_ID), ("Toggled rule", TOGGLED_ID))):
        (tmp_path / f"rule{number}.yml").write_text(RULE.format(title=title, id=rule_id))
    rules, problems = load_rules([tmp_path])
    assert not problems
    return {rule.id: rule for rule in rules}


def _exec(number: int, container: str = "c1") -> Event:
    return Event(f"e{number}", "2026-11-29T00:00:00Z", "processes",
                 {"process": {"name": "worker", "command_line": f"worker {number}"}}, container_id=container)


class _Counting(Detector):
    """Counts its calls and adds one field; the `key` names it."""

    def __init__(self, key: str):
        self.info = DetectorInfo(key, key, key, Severity.LOW, "TA0002 Execution", "T1059")
        self.calls = 0
        self._lock = threading.Lock()

    def observe(self, doc, source, container_id, verdicts=()):
        with self._lock:
            self.calls += 1
        return Observation(fields={self.info.key: {"seen": True}})


class _Raising(Detector):
    """Raises in `parties` threads at once: each of them catches it and removes it."""

    info = DetectorInfo("raising", "raising", "raising", Severity.LOW, "TA0002 Execution", "T1059")

    def __init__(self, parties: int):
        self._together = threading.Barrier(parties)

    def observe(self, doc, source, container_id, verdicts=()):
        self._together.wait(WAIT)
        raise RuntimeError("broken detector")


def _run_all(targets) -> list[BaseException]:
    errors: list[BaseException] = []

    def guarded(target):
        def run():
            try:
                target()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
        return run

    threads = [threading.Thread(target=guarded(t)) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a thread did not finish"
    return errors


def test_rules_and_detectors_change_while_four_threads_judge(tmp_path, caplog):
    rules = _rules(tmp_path)
    kept, removed = _Counting("kept"), _Counting("removed")
    engine = RulesEngine(rules.values(), detectors=[kept, removed, _Raising(parties=4)])
    judged: list[Event] = []
    judged_lock = threading.Lock()
    finished = []

    def judge_many(worker: int):
        def run():
            for round_ in range(150):
                batch = engine.process(Batch("processes", [_exec(worker * 10_000 + round_ * 10 + i) for i in range(10)]))
                with judged_lock:
                    judged.extend(batch.events)
            finished.append(worker)
        return run

    def toggle():
        toggled = rules[TOGGLED_ID]
        flips = 0
        while len(finished) < 4 or flips < 20:
            assert engine.disable_rule(toggled)
            assert engine.enable_rule(toggled)
            flips += 1
            if flips == 10:
                assert engine.remove_detector(removed)
                assert not engine.remove_detector(removed)

    errors = _run_all([judge_many(w) for w in range(4)] + [toggle])
    assert errors == []
    assert len(judged) == 4 * 150 * 10
    for event in judged:
        ids = [v.rule_id for v in event.verdicts]
        assert ids.count(STEADY_ID) == 1 and ids.count(TOGGLED_ID) <= 1, ids
        assert event.fields["shipper"]["kept"] == {"seen": True}
    assert any(TOGGLED_ID in {v.rule_id for v in e.verdicts} for e in judged)  # it did run while enabled
    # the raising detector was removed once, though four threads saw it raise at once
    assert [r.getMessage() for r in caplog.records].count("detector raised and is disabled; shipping goes on") == 1
    assert engine.detectors == (kept,)
    calls = removed.calls
    engine.process(Batch("processes", [_exec(1)]))
    assert removed.calls == calls  # never called again once removed
    assert {rule.id for rule in engine.rules} == {STEADY_ID, TOGGLED_ID}


def test_a_disabled_rule_stops_judging_and_an_enabled_one_starts(tmp_path):
    rules = _rules(tmp_path)
    engine = RulesEngine(rules.values())
    before = engine.by_category
    assert engine.disable_rule(rules[TOGGLED_ID]) and not engine.disable_rule(rules[TOGGLED_ID])
    assert [v.rule_id for v in engine.judge(_exec(1)).verdicts] == [STEADY_ID]
    assert {r.id for r in before["process_creation"]} == {STEADY_ID, TOGGLED_ID}  # what a reader held is unchanged
    assert engine.enable_rule(rules[TOGGLED_ID]) and not engine.enable_rule(rules[TOGGLED_ID])
    assert sorted(v.rule_id for v in engine.judge(_exec(2)).verdicts) == [STEADY_ID, TOGGLED_ID]


def _stats(container: str, image: str = "app", pids: int = 3) -> Event:
    fields = {"container": {"image": {"name": image}},
              "shipper": {"container": {"cpu": {"cores": 0.1}, "pids": pids, "memory": {"bytes": 2**24}}}}
    return Event(f"s-{container}-{pids}", "2026-11-29T00:00:00Z", "stats", fields, container_id=container)


class _HeldTraining(AnomalyDetector):
    """Trains for real, but only once the test lets it: `started` is set while it holds the CPU."""

    def __init__(self):
        super().__init__(AnomalyConfig(warmup_samples=2, trees=10), None)
        self.started, self.release = threading.Event(), threading.Event()

    def _fit(self, samples):
        self.started.set()
        assert self.release.wait(WAIT), "the test never released the training"
        return super()._fit(samples)


def test_training_the_anomaly_model_does_not_hold_up_other_sources():
    detector = _HeldTraining()
    engine = RulesEngine([], detectors=[detector])
    engine.judge(_stats("c1"))
    trainer = threading.Thread(target=engine.judge, args=(_stats("c1", pids=4),))  # the second sample trains
    trainer.start()
    assert detector.started.wait(WAIT)
    order: list[str] = []

    def other_sources():  # a process in the same container, a sample of the same image, another image
        engine.process(Batch("processes", [_exec(1, "c1")]))
        engine.process(Batch("stats", [_stats("c2", pids=5), _stats("c3", image="other")]))
        order.append("judged")

    assert _run_all([other_sources]) == []
    order.append("released")
    detector.release.set()
    trainer.join(WAIT)
    assert order == ["judged", "released"] and not trainer.is_alive()
    assert "anomaly" in engine.judge(_stats("c1", pids=6)).fields["shipper"]  # the trained model is in use


def test_a_detector_adds_to_the_event_without_changing_what_it_was_shown():
    detector = AnomalyDetector(AnomalyConfig(warmup_samples=2, trees=10), None)
    engine = RulesEngine([], detectors=[detector])
    for pids in (3, 4):
        engine.judge(_stats("c1", pids=pids))
    event = _stats("c1", pids=5)
    shipper_before = repr(event.fields["shipper"])
    judged = engine.judge(event)
    assert repr(event.fields["shipper"]) == shipper_before  # the source's event is untouched
    assert judged.fields["shipper"]["anomaly"]["model"] == "app"
    assert judged.fields["shipper"]["container"] == event.fields["shipper"]["container"]
    assert detector.observe({"container": {"image": {"name": "app"}}}, "files", "c1") == NOTHING
