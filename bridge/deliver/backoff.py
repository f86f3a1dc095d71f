"""When a failed job is tried again, and when it is given up as dead."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

MAX_RETRY_AFTER = 86_400.0  # a longer Retry-After is a CRM bug or a clock gone wrong


@dataclass
class Backoff:
    base: float = 10.0  # first retry after ~base seconds
    max_delay: float = 3600.0  # never wait longer between tries (unless the CRM says so)
    max_age: float = 72 * 3600.0  # give up this long after the event arrived
    rng: random.Random = field(default_factory=random.Random)

    def delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds until the next try after ``attempts`` failed ones.

        Exponential with "equal jitter" (half fixed, half random) so a CRM coming back from
        an outage is not hit by every job at the same instant. ``Retry-After`` wins when given,
        but never below a floor that doubles with each failed try (0.5 s, 1 s, 2 s… up to
        ``max_delay``): a CRM answering ``Retry-After: 0`` again and again is not hammered.
        """
        if retry_after is not None:
            retry_after = min(retry_after, MAX_RETRY_AFTER)
            floor = min(self.max_delay, 0.5 * 2 ** max(0, attempts - 1))
            return max(retry_after, floor)
        exp = min(self.max_delay, self.base * 2 ** max(0, attempts - 1))
        return exp / 2 + self.rng.uniform(0, exp / 2)

    def gives_up(self, created_at: float, retry_at: float) -> bool:
        return retry_at - created_at > self.max_age
