"""Read positions, advanced only for events a sink (or the spool) has acknowledged.

One JSON file, rewritten atomically (temporary file, fsync, rename), so after a
crash it holds either the previous or the new positions, never half of each.
"""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from .errors import ShipperError
from .private import open_private, private_dir


class Checkpoints:
    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._dirty = False
        try:
            self._positions: dict[str, dict[str, Any]] = orjson.loads(self.path.read_bytes())
        except FileNotFoundError:
            self._positions = {}
        except orjson.JSONDecodeError as exc:
            raise ShipperError(f"{self.path}: checkpoint file is corrupt ({exc}); move it away to start over") from exc

    @property
    def empty(self) -> bool:
        """Nothing was ever acknowledged from this state directory (a first start)."""
        with self._lock:
            return not any(self._positions.values())

    def get(self, source: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._positions.get(source, {}))

    def acknowledge(self, source: str, positions: dict[str, Any]) -> None:
        if not positions:
            return
        with self._lock:
            current = self._positions.setdefault(source, {})
            for key, value in positions.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self._dirty = True

    def flush(self) -> None:
        with self._lock:
            if not self._dirty:
                return
            data = orjson.dumps(self._positions, option=orjson.OPT_INDENT_2)
            self._dirty = False
        private_dir(self.path.parent)
        tmp = self.path.with_suffix(".tmp")
        with open_private(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.rename(tmp, self.path)
