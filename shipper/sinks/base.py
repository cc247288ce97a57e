"""What every sink is, and the one error a sink raises when it cannot take events now."""

from __future__ import annotations

import abc
from typing import Any

from ..errors import ShipperError


class SinkUnavailable(ShipperError):
    """The sink could not take these lines now; they must wait (spool) and be sent again.

    `lines` are exactly the lines not yet acknowledged: what already succeeded
    in the same call is not among them.
    """

    def __init__(self, message: str, lines: list[bytes] | None = None):
        super().__init__(message)
        self.lines = lines


class Sink(abc.ABC):
    name: str

    @abc.abstractmethod
    def write(self, lines: list[bytes], resent: bool = False) -> Any:
        """Deliver `lines` (one bulk action + document each) or raise SinkUnavailable.

        `resent`: these lines may have been delivered before (a spool replay, a re-read
        after a start); a sink that can tell which were may skip them."""

    def close(self) -> None:
        pass
