"""Whether the exchange answers: the one fact ``LiveExchange`` keeps about its own requests.

Any answer counts as reachable, a refusal included (the exchange understood the request); no
answer — a network error, a timeout, a 5xx "unavailable", a request cut off by its caller's
deadline — counts as unreachable from the first such failure until the next answer.
``unreachable_s`` is how long that has lasted (0 while the exchange answers), and it is what the
heartbeat, ``guardbot health`` and the ``guardbot_exchange_reachable`` metric report.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Reachability:
    """Last answer and first unanswered request since (epoch seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.last_ok: float | None = None
        self.failing_since: float | None = None
        self.last_error: str | None = None

    def ok(self) -> None:
        self.last_ok = self.clock()
        self.failing_since = None
        self.last_error = None

    def failed(self, error: str) -> None:
        if self.failing_since is None:
            self.failing_since = self.clock()
        self.last_error = error

    @property
    def reachable(self) -> bool:
        return self.failing_since is None

    def unreachable_s(self, now: float | None = None) -> float:
        if self.failing_since is None:
            return 0.0
        return max(0.0, (self.clock() if now is None else now) - self.failing_since)
