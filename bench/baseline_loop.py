"""The yardstick: the simplest honest shipper of json-file logs. Not to be optimised.

    python bench/baseline_loop.py [--shape FILE] URL INDEX CONTAINER_ID=PATH [CONTAINER_ID=PATH ...]

For each json-file entry: `orjson.loads`, a dict with `@timestamp`, `message`,
`stream`, `container.id`, `orjson.dumps`; 2,000 documents per `_bulk` POST (one
keep-alive connection). No ids, no checkpoints, no detection. Reads each file once,
to its end, and exits when the last request is answered. bench_shipping.py runs it
beside the shipper on the same files and the same endpoint, in the same invocation.

`--shape FILE` (JSON: container id -> the fields of the shipper's document for that
container but `@timestamp` and `message`): the same loop sending documents of the
shipper's shape and size, those fields beside the three from the entry. A second
yardstick, for what the shipper's bigger documents cost a shipper that does nothing else.
"""

from __future__ import annotations

import http.client
import sys
import urllib.parse
from pathlib import Path

import orjson

BATCH = 2000
ACTION = b'{"create":{}}\n'


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> None:
    connection.request("POST", path, body, {"Content-Type": "application/x-ndjson"})
    response = connection.getresponse()
    answer = response.read()
    if response.status != 200 or orjson.loads(answer).get("errors"):
        raise SystemExit(f"bulk failed: {response.status} {answer[:300]!r}")


def main() -> None:
    args = sys.argv[1:]
    shapes = None
    if args[0] == "--shape":
        shapes, args = orjson.loads(Path(args[1]).read_bytes()), args[2:]
    url, index, *files = args
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port)
    path = f"/{index}/_bulk"
    lines: list[bytes] = []
    for spec in files:
        container_id, _, log_path = spec.partition("=")
        with open(log_path, "rb") as handle:
            if shapes is not None:
                lines = shaped(handle, shapes[container_id], connection, path, lines)
                continue
            for raw in handle:
                entry = orjson.loads(raw)
                doc = {"@timestamp": entry["time"], "message": entry["log"], "stream": entry["stream"],
                       "container": {"id": container_id}}
                lines.append(ACTION + orjson.dumps(doc) + b"\n")
                if len(lines) == BATCH:
                    post(connection, path, b"".join(lines))
                    lines = []
    if lines:
        post(connection, path, b"".join(lines))
    connection.close()
    # its own peak RSS, for bench_shipping.py: the rusage a parent gets counts the parent's pages at the fork
    print(next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM:")))


def shaped(handle, shape: dict, connection: http.client.HTTPConnection, path: str, lines: list[bytes]) -> list[bytes]:
    """The loop above with the shipper's fields in each document (its own loop: the yardstick's is unchanged)."""
    for raw in handle:
        entry = orjson.loads(raw)
        doc = {"@timestamp": entry["time"], "message": entry["log"], "stream": entry["stream"], **shape}
        lines.append(ACTION + orjson.dumps(doc) + b"\n")
        if len(lines) == BATCH:
            post(connection, path, b"".join(lines))
            lines = []
    return lines


if __name__ == "__main__":
    main()
