"""Watches delivery and tells the admin: dead jobs, refused credentials, a stale backlog, and
calls the sweep had to recover.

Every ``alerts.interval_seconds`` it looks once and sends at most one message per adapter
(with counts) and one about recovered calls: a burst of failures is one message, not a flood.
A message that could not be sent is kept and tried again (honouring a channel's
``retry_after``) for up to ``GIVE_UP_SECONDS``; the monitor is its own task and only reads the
database, so alerting never delays delivery.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import httpx
import structlog
from aiohttp import web

from bridge.alerts.channels import Alert, Channel, ChannelError, channels
from bridge.background import background
from bridge.keys import CLOCK, DB, METRICS, SETTINGS
from bridge.metrics import Metrics
from bridge.redact import REDACTOR
from bridge.registry import configured
from bridge.settings import Settings
from bridge.store import Storage, StorageError
from bridge.store.reports import reports_for

log = structlog.get_logger("bridge.alerts")

RETRY_SECONDS = 30.0  # a failed message is tried again after this (or the channel's wait)
GIVE_UP_SECONDS = 24 * 3600.0
MAX_QUEUED = 100  # messages kept per channel while it fails; the oldest are dropped
STALE_REPEAT = 12  # a persisting stale backlog is repeated every this many intervals
AUTH_CODES = ("401", "403")


@dataclass
class _Queued:
    alert: Alert
    first: float
    due: float
    attempts: int = 0


class Monitor:
    def __init__(
        self,
        settings: Settings,
        db: Storage,
        metrics: Metrics,
        outlets: list[Channel],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._alerts = settings.alerts
        self._db = db
        self._metrics = metrics
        self._channels = outlets
        self._clock = clock
        self._queue: dict[str, list[_Queued]] = {c.name: [] for c in outlets}
        self._since = clock()
        self._last_event = 0
        self._auth_seen: dict[str, float] = {}
        self._stale_ticks: dict[str, int] = {}
        self._names = [a.name for a in configured(settings.adapters)]

    async def start(self) -> None:
        self._last_event = await reports_for(self._db).last_event_id()
        for name in self._names:
            self._auth_seen[name] = self._auth_count(name)

    def _auth_count(self, adapter: str) -> float:
        registry = self._metrics.registry
        return sum(
            registry.get_sample_value(
                "pbx_bridge_crm_requests_total", {"adapter": adapter, "code": code}
            )
            or 0.0
            for code in AUTH_CODES
        )

    def _link(self, path: str) -> str:
        base = self._settings.server.public_url
        return (
            f"\nConsole: {base.rstrip('/')}{path}" if base and self._settings.admin.enabled else ""
        )

    async def collect(self) -> list[Alert]:
        """What happened since the last look, as at most one alert per adapter (+ one)."""
        now = self._clock()
        dead = await reports_for(self._db).dead_since(self._since)
        oldest = await reports_for(self._db).oldest_pending()
        recovered, self._last_event = await reports_for(self._db).recovered_after(self._last_event)
        self._since = now
        threshold = self._alerts.pending_age_minutes * 60
        out = []
        for name in sorted({*self._names, *dead}):
            lines: list[str] = []
            counts: dict[str, float] = {}
            if name in dead:
                n, reason = dead[name]
                counts["dead"] = n
                lines.append(f"• {n} job(s) went dead; last reason: {reason}")
            auth = self._auth_count(name) if name in self._auth_seen else 0.0
            if auth > self._auth_seen.get(name, 0.0):
                counts["auth_failures"] = auth - self._auth_seen[name]
                lines.append(
                    f"• the CRM refused the credentials {auth - self._auth_seen[name]:g} time(s)"
                    " (HTTP 401/403): check the token or the integration's access"
                )
            self._auth_seen[name] = auth
            age = now - oldest[name] if name in oldest else 0.0
            if age > threshold:
                tick = self._stale_ticks.get(name, 0)
                if tick % STALE_REPEAT == 0:
                    counts["oldest_pending_seconds"] = round(age)
                    lines.append(
                        f"• the oldest pending job has waited {age / 60:.0f} min"
                        f" (threshold {self._alerts.pending_age_minutes:g} min)"
                    )
                self._stale_ticks[name] = tick + 1
            else:
                self._stale_ticks.pop(name, None)
            if lines:
                text = "\n".join(lines) + self._link(f"/admin/outbox?status=dead&adapter={name}")
                out.append(
                    Alert(f"pbx-bridge: {name} needs attention", REDACTOR(text), name, counts)
                )
        if recovered:
            text = (
                f"The sweep recovered {recovered} call(s) from the onlinePBX call history whose"
                " webhook never came: check the webhook URL and events in onlinePBX."
                + self._link("/admin/calls")
            )
            out.append(Alert("pbx-bridge: webhooks lost", text, None, {"recovered": recovered}))
        return out

    def enqueue(self, alerts: list[Alert]) -> None:
        now = self._clock()
        for queue in self._queue.values():
            queue.extend(_Queued(a, now, now) for a in alerts)
            del queue[:-MAX_QUEUED]

    async def send_due(self) -> None:
        """Try every queued message that is due, on every channel, concurrently."""
        await asyncio.gather(*(self._drain(c) for c in self._channels))

    async def _drain(self, channel: Channel) -> None:
        queue = self._queue[channel.name]
        for item in list(queue):
            now = self._clock()
            if item.due > now:
                continue
            item.attempts += 1
            try:
                await channel.send(item.alert)
            except ChannelError as exc:
                if now - item.first > GIVE_UP_SECONDS:
                    queue.remove(item)
                    log.error("alert dropped after a day of failures", channel=channel.name,
                              reason=exc.reason, attempts=item.attempts)  # fmt: skip
                    continue
                item.due = now + max(exc.retry_after or 0.0, RETRY_SECONDS)
                log.warning("could not send an alert; will retry", channel=channel.name,
                            reason=exc.reason, retry_in=round(item.due - now))  # fmt: skip
                if exc.retry_after:
                    break  # the service asked us to wait: the rest would be refused too
                continue
            queue.remove(item)
            log.info("alert sent", channel=channel.name, adapter=item.alert.adapter)

    @property
    def queued(self) -> int:
        return sum(len(q) for q in self._queue.values())

    async def run(self) -> None:
        interval = self._alerts.interval_seconds
        step = min(interval, RETRY_SECONDS)
        next_look = self._clock() + interval
        while True:
            await asyncio.sleep(step if self.queued else max(0.0, next_look - self._clock()))
            if self._clock() >= next_look:
                next_look = self._clock() + interval
                try:
                    self.enqueue(await self.collect())
                except StorageError as exc:
                    log.warning("alerts: could not read the outbox", error=str(exc))
            await self.send_due()


async def alerts_ctx(app: web.Application) -> AsyncIterator[None]:
    """Runs the monitor when ``[alerts]`` names a channel."""
    settings = app[SETTINGS]
    if not settings.alerts.enabled:
        yield
        return
    async with httpx.AsyncClient(timeout=15.0) as client:
        monitor = Monitor(settings, app[DB], app[METRICS], channels(settings.alerts, client),
                          app[CLOCK])  # fmt: skip
        await monitor.start()
        async with background(monitor.run(), "alerts"):
            yield


async def send_test(settings: Settings) -> list[tuple[str, str | None]]:
    """One test message per configured channel: (channel, None if sent else the reason)."""
    alert = Alert(
        "pbx-bridge: test alert",
        "This is a test from `pbx-bridge check`: alerts reach you on this channel.",
        None,
        {"test": 1},
    )
    results: list[tuple[str, str | None]] = []
    async with httpx.AsyncClient(timeout=15.0) as client:
        for channel in channels(settings.alerts, client):
            try:
                await channel.send(alert)
            except ChannelError as exc:
                results.append((channel.name, exc.reason))
            else:
                results.append((channel.name, None))
    return results
