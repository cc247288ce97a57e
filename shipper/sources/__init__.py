"""Sources: each watches one side of the host and emits batches of `Event`s (base.py).

- `docker_logs`: every container's log lines, from its json-file on disk (jsonfile.py) or
  the Engine API stream (`mode: api`).
- `docker_events`: the engine's event stream: lifecycle (with the start audit from
  inspect), exec sessions, image events.
- `processes`: execs as they happen (the kernel's process-events connector and, with
  `audit`, its execve records: exec_watch.py, netlink.py), /proc sampling as the safety
  net, and each container's TCP/packet sockets as `network` events (procfs.py).
- `files`: inotify on each container's writable layer, its /dev and host paths.
- `stats`: resource use per container from Engine API stats streams.
- `host_config`: the engine's own configuration, audited at start, hourly and on reload.
- `vulnerabilities`: scanner (Trivy) reports dropped in a directory.

Each runs in its own thread; the pipeline's `emit` enriches, judges and serialises a
batch in that thread before it is queued for delivery.
"""
