"""The anomaly detector learns an image's baseline, keeps its model across a restart, and flags a burst."""

from __future__ import annotations

import time

from shipper.detect.stateful import AnomalyDetector
from shipper.es_setup import run_setup

from .shipper_proc import ShipperProcess, count

SETTINGS = ("sources.stats.interval=0.5", "detection.anomaly.warmup_samples=12", "pipeline.flush_interval=0.2")
IMAGE = "shipper-testbed/anomaly-restart"


def wait_for_log(shipper: ShipperProcess, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in shipper.log_path.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} never logged:\n{shipper.log_tail()}"
        time.sleep(0.2)


def test_model_survives_restart_and_flags_a_burst(docker_client, es, test_image, run_container, tmp_path):
    run_setup(es)  # the data stream's template: without it, rule ids would be analysed text
    docker_client.images.get(test_image).tag(IMAGE, "1")
    (tmp_path / "state").mkdir()
    first = ShipperProcess(tmp_path / "state", *SETTINGS)
    second = None
    try:
        first.start()
        calm = run_container(["sleep", "600"], image=f"{IMAGE}:1", labels=first.labels, user="1000", mem_limit="64m",
                             nano_cpus=2_000_000_000, pids_limit=64)
        wait_for_log(first, "anomaly model trained")
        assert first.stop() == 0
        models = list((first.state / "models").glob("*.pickle"))
        assert [m.name for m in models] == ["shipper-testbed_anomaly-restart.pickle"]

        second = ShipperProcess(tmp_path / "state", *SETTINGS, run_id=first.run_id)  # same state directory
        second.log_path = tmp_path / "second.log"
        second.start()
        calm.exec_run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do (timeout 30 sh -c 'while :; do :; done') & done; wait"],
                      detach=True, user="1000")
        rule = {"term": {"shipper.verdicts.rule.id": AnomalyDetector.info.id}}
        query = {"bool": {"filter": [rule, {"term": {"container.id": calm.id}}]}}
        deadline = time.monotonic() + 40
        while count(es, second.index, query) == 0:
            assert time.monotonic() < deadline, f"no anomaly alert:\n{second.log_tail()}"
            time.sleep(0.5)
        log = second.log_path.read_text(errors="replace")
        assert "anomaly model reloaded" in log and "anomaly model trained" not in log  # reloaded, not retrained
        alert = es.search(index=second.index, query=query, size=1)["hits"]["hits"][0]["_source"]
        assert alert["shipper"]["anomaly"]["score"] >= 0.55
        assert alert["shipper"]["anomaly"]["features"]["pids"] > 2
        second.stop()
    finally:
        for shipper in (first, second):
            if shipper is not None:
                shipper.close()
        docker_client.images.remove(f"{IMAGE}:1")
