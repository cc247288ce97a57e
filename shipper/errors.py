"""One error tree for everything the shipper reports to a human.

The CLI catches `ShipperError` at its boundary and prints `str(error)`;
anything else is a bug and keeps its traceback.
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

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        count = len(self.problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(f"invalid configuration ({count} problem{'s' * (count != 1)}):\n{lines}")


class ServiceUnavailable(ShipperError):
    """Docker or Elasticsearch could not be reached."""

    exit_code = 3
