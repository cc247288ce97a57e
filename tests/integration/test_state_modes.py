"""The real `shipper run`, started with umask 022, while Elasticsearch is away (so its spool
fills): nothing under its state directory is readable by group or others."""

from __future__ import annotations

import os
import stat

from .shipper_proc import free_port


def test_a_running_shipper_keeps_its_state_directory_owner_only(shippers, run_container):
    away = f"http://127.0.0.1:{free_port()}"  # nothing listens: every batch goes to the spool
    shipper = shippers(f"elasticsearch.hosts={away}", "elasticsearch.request_timeout=2", "pipeline.flush_interval=0.2",
                       "sources.processes.enabled=false", "sources.files.enabled=false", "sources.stats.enabled=false")
    old = os.umask(0o022)
    try:
        shipper.start()
    finally:
        os.umask(old)
    container = run_container(["sh", "-c", "seq 1 200 | sed 's/^/private-/'"], labels=shipper.labels)
    assert container.wait(timeout=60)["StatusCode"] == 0
    assert shipper.wait_for_metric("shipper_spooled_events_total", 200) >= 200, shipper.log_tail()
    assert shipper.stop() == 0, shipper.log_tail()

    state = shipper.state
    entries = [state, *state.rglob("*")]
    names = {p.relative_to(state).as_posix() for p in entries[1:]}
    assert {"lock", "spool", "checkpoints.json"} <= names, names
    assert any(name.startswith("spool/") and name.endswith(".ndjson") for name in names), names
    exposed = [f"{p} {stat.S_IMODE(p.lstat().st_mode):04o}" for p in entries if stat.S_IMODE(p.lstat().st_mode) & 0o077]
    assert exposed == []
