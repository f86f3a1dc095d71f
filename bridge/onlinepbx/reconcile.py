"""Recover calls whose webhook never arrived, from onlinePBX's call history.

A recovered call goes through the same :meth:`EventWriter.submit` as a webhook, marked
``recovered``; the ``(domain, uuid, event)`` dedup makes a webhook that turns up later (or a
second sweep) harmless. The periodic sweep covers the last few hours; ``pbx-bridge backfill``
(:mod:`bridge.onlinepbx.backfill`) walks a past range with the same :class:`Reconciler`.

A recovered call causes its post-call jobs, and a live ``over`` only when the bridge saw the
call ring (:class:`RecoveryWriter`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from bridge.adapter.contract import LIVE_ACTIONS
from bridge.call import CALL_END, CALL_MISSED
from bridge.deliver.service import without
from bridge.onlinepbx.client import ApiError, OnlinePBX
from bridge.onlinepbx.history import LOCAL, as_webhook, direction, finished
from bridge.store import EventWriter, IncomingEvent, Storage, Stored
from bridge.store.events import JobPlanner

log = structlog.get_logger("bridge.reconcile")
SWEEP_LEAD = "onlinepbx-sweep"


@dataclass(slots=True)
class Tally:
    found: int = 0  # finished calls in the history
    known: int = 0  # the bridge already has their call_end / call_missed
    queued: int = 0  # recovered now
    internal: int = 0  # extension-to-extension calls: nothing for a CRM
    missed: int = 0  # of the queued: missed calls (each a task for the task-creating adapters)

    def add(self, other: Tally) -> None:
        self.found += other.found
        self.known += other.known
        self.queued += other.queued
        self.internal += other.internal
        self.missed += other.missed


class RecoveryWriter:
    """Submits recovered events with the jobs they call for.

    A call the bridge has no event of never rang live through it: no card was shown, so its
    recovered ``call_end``/``call_missed`` gets only the post-call jobs (``log_call``,
    ``create_task``). Planned as for a webhook, it also got an ``over`` for every adapter with
    live actions (``local`` included, by default), which could only end "skipped: no card was
    shown": noise in the outbox, the console and the metrics, and a claim for nothing. A call
    whose ring or answer did arrive (only its end webhook was lost) keeps the full plan: its
    ``over`` closes the card those showed, or the ``local`` adapter's call in progress.
    """

    def __init__(
        self,
        storage: Storage,
        plan_jobs: JobPlanner,
        on_jobs: Callable[[set[str]], None] = lambda adapters: None,
        clock: Callable[[], float] = time.time,
        *,
        seen: EventWriter | None = None,
    ) -> None:
        """``seen``: the writer with the full plan, if one exists (the server's, shared with
        webhooks); else one is made from ``plan_jobs``."""
        self._storage = storage
        self._seen = seen or EventWriter(storage, plan_jobs, on_jobs, clock)
        self._unseen = EventWriter(storage, without(plan_jobs, LIVE_ACTIONS), on_jobs, clock)

    async def submit(self, event: IncomingEvent) -> Stored:
        # Any stored event of the call came live (a ring, an answer): a call is recovered only
        # while its end is missing (Reconciler._known), and the recovered event is that end.
        rang = await self._storage.call_events(event.domain, event.uuid)
        return await (self._seen if rang else self._unseen).submit(event)


class Reconciler:
    def __init__(
        self,
        api: OnlinePBX,
        writer: RecoveryWriter | None,
        storage: Storage,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``writer`` None: a dry run that only counts."""
        self._api = api
        self._writer = writer
        self._storage = storage
        self._clock = clock
        self.domain = api.domain

    async def recover(self, start: int, end: int) -> Tally:
        """Synthesize the missing events of calls that started in ``[start, end]``."""
        records = [r for r in await self._api.history(start, end) if finished(r)]
        tally = Tally(found=len(records))
        known = await self._known({str(r["uuid"]).strip() for r in records})
        for record in records:
            if direction(record) == LOCAL:
                tally.internal += 1
                continue
            payload = as_webhook(record, self.domain)
            if payload["uuid"] in known:
                tally.known += 1
                continue
            missed = int(payload["event"] == CALL_MISSED)
            tally.queued += 1
            tally.missed += missed
            if self._writer is None:
                continue
            stored = await self._writer.submit(
                IncomingEvent(self.domain, payload["uuid"], payload["event"], payload, True)
            )
            if stored.duplicate:  # the webhook won the race: fine, it is the same call
                tally.queued -= 1
                tally.missed -= missed
                tally.known += 1
        return tally

    async def _known(self, uuids: set[str]) -> set[str]:
        """Which of ``uuids`` already have a final event (under our domain, or none given)."""
        return await self._storage.final_uuids(sorted(uuids), self.domain, [CALL_END, CALL_MISSED])

    async def leads(self) -> bool:
        """This process holds the sweep's lead (one replica sweeps at a time)."""
        return await self._storage.try_lead(SWEEP_LEAD)

    async def sweep(self, lookback_seconds: float) -> Tally:
        now = int(self._clock())
        tally = await self.recover(now - int(lookback_seconds), now)
        if tally.queued:
            log.warning(
                "recovered calls whose webhook never arrived",
                recovered=tally.queued,
                found=tally.found,
            )
        else:
            log.debug("sweep found nothing missing", found=tally.found, known=tally.known)
        return tally


async def sweep_forever(
    reconciler: Reconciler, interval_seconds: float, lookback_seconds: float
) -> None:
    """Sweep at once (covers a restart after downtime), then every ``interval_seconds``.

    With several replicas only the one holding the sweep's lead sweeps; another takes over
    within one interval when it dies.
    """
    while True:
        try:
            if await reconciler.leads():
                await reconciler.sweep(lookback_seconds)
        except ApiError as exc:
            log.error("sweep failed; trying again next time", error=str(exc))
        except Exception:
            log.exception("sweep failed; trying again next time")
        await asyncio.sleep(interval_seconds)
