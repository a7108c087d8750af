"""The per-molecule time limit (``timeout``), shared by every stage of one embedding."""

from __future__ import annotations

import math
import time

from rdconfvae.errors import EmbeddingTimeoutError

__all__ = ["Deadline"]


class Deadline:
    """A point in ``time.monotonic()`` time (a system-wide clock, valid in worker processes).

    ``timeout`` in seconds; ``None`` or 0 means no limit.
    """

    def __init__(self, timeout: float | None) -> None:
        self.at = time.monotonic() + timeout if timeout else math.inf
        self.timeout = timeout

    def remaining(self) -> float | None:
        """Seconds left (None: no timeout)."""
        if math.isinf(self.at):
            return None
        return max(self.at - time.monotonic(), 0.0)

    def check(self, stage: str) -> None:
        """Raise :class:`EmbeddingTimeoutError` naming ``stage`` once the time is up."""
        if time.monotonic() > self.at:
            raise EmbeddingTimeoutError(f"timeout of {self.timeout} s reached during {stage}")
