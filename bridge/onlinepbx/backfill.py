"""``pbx-bridge backfill``: recover a past range of calls from onlinePBX's history.

The range is walked in windows (at most 7 days, the API's limit), paced by the client's rate
limit. After each window the position is saved in ``meta``, so an interrupted run (Ctrl-C, a
network failure) started again with the same range continues where it stopped; repeating a
window is harmless anyway, because recovered events are deduplicated like webhooks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bridge.onlinepbx.reconcile import Reconciler, Tally
from bridge.store import Storage


@dataclass(frozen=True, slots=True)
class Window:
    start: int
    end: int  # inclusive


def windows(since: int, until: int, size: int) -> list[Window]:
    """``[since, until)`` cut into windows of ``size`` seconds that do not overlap."""
    out = []
    start = since
    while start < until:
        end = min(start + size, until)
        out.append(Window(start, end - 1))
        start = end
    return out


class Backfill:
    def __init__(
        self,
        reconciler: Reconciler,
        storage: Storage,
        since: int,
        until: int,
        window_seconds: int,
        *,
        dry_run: bool = False,
    ) -> None:
        self._reconciler = reconciler
        self._storage = storage
        self._dry_run = dry_run
        self.since, self.until = since, until
        self.windows = windows(since, until, window_seconds)
        self._cursor_key = f"backfill:{reconciler.domain}:{since}:{until}"

    async def resume_point(self) -> int:
        """Where this range continues (``since`` when it was never started)."""
        stored = await self._storage.meta(self._cursor_key)
        return int(stored) if stored else self.since

    async def run(self, on_window: Callable[[Window, Tally], None]) -> Tally:
        """Recover every remaining window; ``on_window`` reports progress after each."""
        resume = await self.resume_point()
        total = Tally()
        for window in self.windows:
            if window.end < resume:
                continue
            tally = await self._reconciler.recover(window.start, window.end)
            total.add(tally)
            if not self._dry_run:
                await self._storage.put_meta(self._cursor_key, str(window.end + 1))
            on_window(window, tally)
        return total
