"""The yardstick: the simplest honest shipper of json-file logs. Not to be optimised.

    python bench/baseline_loop.py URL INDEX CONTAINER_ID=PATH [CONTAINER_ID=PATH ...]

For each json-file entry: `orjson.loads`, a dict with `@timestamp`, `message`,
`stream`, `container.id`, `orjson.dumps`; 2,000 documents per `_bulk` POST (one
keep-alive connection). No ids, no checkpoints, no detection. Reads each file once,
to its end, and exits when the last request is answered. bench_shipping.py runs it
beside the shipper on the same files and the same endpoint, in the same invocation.
"""

from __future__ import annotations

import http.client
import sys
import urllib.parse

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
    url, index, *files = sys.argv[1:]
    parsed = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parsed.hostname, parsed.port)
    path = f"/{index}/_bulk"
    lines: list[bytes] = []
    for spec in files:
        container_id, _, log_path = spec.partition("=")
        with open(log_path, "rb") as handle:
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


if __name__ == "__main__":
    main()
