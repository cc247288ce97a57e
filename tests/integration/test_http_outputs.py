"""`shipper run` with output: logstash and a webhook, against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import time

from tests.unit.test_http_sinks import Endpoint


def test_logstash_output_and_webhook_alerts_end_to_end(run_container, shippers):
    logstash, hook = Endpoint(429), Endpoint()
    try:
        shipper = shippers("output=logstash", f"logstash.url={logstash.url}", "webhook.enabled=true",
                           "webhook.min_severity=high", env={"SHIPPER_WEBHOOK__URL": hook.url}).start()
        container = run_container(["sh", "-c", "i=0; while [ $i -lt 100 ]; do echo line $i; i=$((i+1)); done; "
                                               "echo 'Nmap scan report for 127.0.0.1'; sleep 60"],
                                  labels=shipper.labels, user="1000", mem_limit="64m", nano_cpus=500_000_000,
                                  pids_limit=64)
        deadline = time.monotonic() + 60
        docs: list[dict] = []
        while time.monotonic() < deadline:
            docs = [d for body in list(logstash.bodies) for d in json.loads(body)]
            logged = [d for d in docs if d.get("container", {}).get("id") == container.id
                      and d["event"].get("dataset") == "shipper.docker_logs"]
            if len(logged) >= 101 and hook.bodies:
                break
            time.sleep(0.5)
        assert logstash.statuses[0] == 429  # backed off, then delivered
        assert len(logged) == 101 and len({d["@metadata"]["_id"] for d in logged}) == 101
        assert {d["@metadata"]["_index"] for d in docs} == {shipper.index}
        messages = [json.loads(b) for b in hook.bodies]
        assert any("Port scanner output" in m["text"] and container.name in m["text"] for m in messages)
        assert shipper.stop() == 0
        assert hook.url.split("/")[-1] not in shipper.log_path.read_text()
    finally:
        logstash.close()
        hook.close()
