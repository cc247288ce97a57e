"""The README's main-job command, end to end, in its one-shot form."""

import os
import subprocess
import uuid

from .shipper_proc import ROOT, free_port


def test_main_job_ships_demo_containers(tmp_path, es, docker_client):
    namespace = f"t{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "SHIPPER_DEMO_ONCE": "1", "DEMO_SECONDS": "8", "SHIPPER_STATE_DIR": str(tmp_path / "state"),
           "SHIPPER_NAMESPACE": namespace, "SHIPPER_MONITOR_PORT": str(free_port())}
    result = subprocess.run([str(ROOT / "scripts" / "run.sh")], env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = {}
    table = result.stdout.split("per container (logs and engine events)")[1].split("== a sample document")[0]
    for line in table.strip().splitlines():
        number, name = line.split()
        counts[name] = int(number)
    assert counts["shipper-demo-batch"] >= 1000  # its 1,000 records, plus its engine events
    assert counts["shipper-demo-web"] > 5
    assert counts["shipper-demo-worker"] > 5
    assert '"name": "shipper-demo-web"' in result.stdout
    assert docker_client.containers.list(all=True, filters={"label": "shipper.demo=1"}) == []
