"""The shipper's own logs: JSON lines (ECS-style names) or a human format on a terminal.

Context goes in `extra=`: `log.info("batch sent", extra={"docs": 500})` becomes a
field of the JSON object, and `key=value` after the message in text form.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class _TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS}
        if context:
            line += "  " + " ".join(f"{k}={v}" for k, v in context.items())
        return line


def _json_formatter() -> logging.Formatter:
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "log.level", "name": "log.logger"},
        timestamp="@timestamp",
        json_ensure_ascii=False,
    )


def setup_logging(level: str = "info", fmt: Literal["auto", "json", "text"] = "auto", stream=None) -> None:
    """Install one handler on the root logger; safe to call more than once."""
    stream = stream or sys.stderr
    if fmt == "auto":
        fmt = "text" if stream.isatty() else "json"
    handler = logging.StreamHandler(stream)
    handler.setFormatter(_TextFormatter() if fmt == "text" else _json_formatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Client libraries log every request at INFO; that is our job to summarise.
    for noisy in ("elastic_transport", "elasticsearch", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(max(logging.ERROR, root.level))
