"""One error tree for everything the shipper reports to a human.

The CLI catches `ShipperError` at its boundary and prints `str(error)` on one
line (a `ConfigError` with several problems lists them, one per line); anything
else is a bug and keeps its traceback.

Exit codes: 0 fine, 1 failed, 2 bad configuration or usage, 3 Docker or
Elasticsearch unreachable, 4 Elasticsearch refused the credentials or a privilege.
"""

from __future__ import annotations

from dataclasses import dataclass


class ShipperError(Exception):
    """Base of every error meant for the user. `exit_code` is what the CLI returns."""

    exit_code = 1


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    where: str  # "file:line", "env SHIPPER_X", "--set", ...
    key: str  # dotted config key, "" when not about a key
    message: str

    def __str__(self) -> str:
        key = f" {self.key}:" if self.key else ""
        return f"{self.where}:{key} {self.message}"


class ConfigError(ShipperError):
    """The configuration is invalid; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[Problem], subject: str = "configuration"):
        self.problems = list(problems)
        count = len(self.problems)
        if count == 1:
            super().__init__(f"invalid {subject}: {self.problems[0]}")
            return
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid {subject} ({count} problems):\n{lines}")


class ServiceUnavailable(ShipperError):
    """Docker or Elasticsearch could not be reached."""

    exit_code = 3


class AccessDenied(ShipperError):
    """Elasticsearch refused the credentials (401) or a privilege the command needs (403)."""

    exit_code = 4
