"""One worker per adapter: claims due jobs, runs them, books the outcome.

Workers are independent (own loop, own concurrency, own rate limiter), so one CRM being slow
or down never delays another's jobs. A worker sleeps until it is woken by an insert (on
PostgreSQL also another replica's, through LISTEN/NOTIFY) or until its next job is due: there
is no polling lag.

Across replicas an adapter is delivered by one process at a time: the worker claims only
while it holds the adapter's lead (``Storage.try_lead``; on PostgreSQL a session advisory
lock). That one lead keeps what is per process today true across replicas: the CRM's rate
limit, the contact cache and its one-find-or-create-per-number, the OAuth refresh. A replica
that dies loses the lead with its database session; another takes it within
``LEAD_RETRY`` seconds, and the dead one's claimed jobs once their leases expire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from functools import partial

import structlog

from bridge.adapter.contract import CARD_ACTIONS, LIVE_ACTIONS
from bridge.adapter.errors import Permanent, RetryLater
from bridge.adapter.outcomes import SKIPPED_LABEL, Skipped
from bridge.adapter.ratelimit import first_turn, spend_all
from bridge.deliver.backoff import Backoff
from bridge.deliver.pipeline import Pipeline
from bridge.metrics import Metrics
from bridge.redact import REDACTOR
from bridge.store import DEAD, DONE, PENDING, Job, Outbox, StorageError

log = structlog.get_logger("bridge.deliver")

MAX_IDLE = 60.0  # re-check the table at least this often (a clock jump, a CLI retry)
REBOOK_EVERY = 1.0  # while outcomes wait to be booked, try the database this often
LIVE_RETRY_MAX = 2.0  # seconds between tries of a card: it is useful for a minute at most
LEAD_RETRY = 1.0  # a replica without an adapter's lead asks for it this often

Booking = Callable[[], Awaitable[bool | None]]


class AdapterWorker:
    def __init__(
        self,
        pipeline: Pipeline,
        outbox: Outbox,
        backoff: Backoff,
        metrics: Metrics,
        *,
        concurrency: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = pipeline.name
        self.pipeline = pipeline
        self._outbox = outbox
        self._backoff = backoff
        self._metrics = metrics
        self._concurrency = concurrency
        self._clock = clock
        self._wake = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._live: set[asyncio.Task[None]] = set()  # the fast lane's share of _inflight
        self._running: dict[int, asyncio.Task[None]] = {}  # job id → its task (leases to renew)
        self._lead = f"adapter:{self.name}"
        self._leading = False
        self._next_requeue = 0.0
        self._renewer: asyncio.Task[None] | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        # Outcomes the database refused to record (job id → the write and its status). The
        # job stays 'running', so nothing else takes it; they are booked once it recovers.
        self._unbooked: dict[int, tuple[Booking, str]] = {}

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"worker:{self.name}")
        self._renewer = asyncio.create_task(self._renew(), name=f"leases:{self.name}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running jobs finish for ``grace`` seconds, then put them back."""
        self._stopping = True
        self._wake.set()
        if self._task:
            await asyncio.gather(self._task, return_exceptions=True)
        if self._inflight:
            _, late = await asyncio.wait(self._inflight, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._renewer:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        if self._leading:
            with contextlib.suppress(StorageError):
                await self._outbox.storage.resign(self._lead)

    async def _renew(self) -> None:
        """Keep the leases of the jobs this worker runs alive while their CRM calls last."""
        every = self._outbox.storage.lease_seconds / 3
        while True:
            await asyncio.sleep(every)
            ids = [*self._running, *self._unbooked]
            if ids:
                try:
                    await self._outbox.renew(ids)
                except StorageError as exc:
                    log.warning("could not renew job leases", adapter=self.name, error=str(exc))

    async def _take_lead(self) -> bool:
        """Hold this adapter's lead; on taking it, and then every half lease, requeue the
        jobs whose worker died (expired leases)."""
        storage = self._outbox.storage
        leading = await storage.try_lead(self._lead)
        if leading and not self._leading:
            # Whoever delivered it before may have used the CRM's window a moment ago.
            spend_all(self.pipeline.adapter.ctx.limiters)
            log.info("delivering this adapter", adapter=self.name, owner=storage.owner)
        elif self._leading and not leading:
            log.warning("lost this adapter's lead; another replica delivers it", adapter=self.name)
        self._leading = leading
        now = self._clock()
        if leading and now >= self._next_requeue:
            self._next_requeue = now + storage.lease_seconds / 2
            requeued = await self._outbox.requeue_expired(self.name)
            if requeued:
                log.info("jobs whose worker died are pending again", count=requeued)
        return leading

    async def _run(self) -> None:
        while not self._stopping:
            self._wake.clear()
            # Two budgets: the fast lane (live jobs) has its own slots, so a card is claimed
            # at once even while every post-call slot waits on the CRM's rate limit.
            free_live = self._concurrency - len(self._live)
            free_post = self._concurrency - (len(self._inflight) - len(self._live))
            jobs: list[Job] = []
            try:
                await self._rebook()
                if not await self._take_lead():
                    await asyncio.sleep(LEAD_RETRY)  # not woken by inserts: the leader is
                    continue
                if free_live > 0 or free_post > 0:
                    jobs = await self._outbox.claim(
                        self.name, max(0, free_post), live=max(0, free_live)
                    )
                fast = sum(job.action in LIVE_ACTIONS for job in jobs)
                # Only a lane with a free slot waits for its next due job; a full one is
                # woken when a slot frees (skipping the query matters: every ingest commit
                # wakes us).
                room = [
                    lane
                    for lane, free, got in (
                        ("live", free_live, fast),
                        ("post", free_post, len(jobs) - fast),
                    )
                    if got < free
                ]
                next_due = None
                if room:
                    lane = room[0] if len(room) == 1 else None
                    next_due = await self._outbox.next_due(self.name, lane=lane)
            except StorageError as exc:
                log.error("outbox unavailable", adapter=self.name, error=str(exc))
                await self._sleep(1.0)
                continue
            for job in jobs:
                task = asyncio.create_task(self.process(job))
                self._inflight.add(task)
                if job.action in LIVE_ACTIONS:
                    self._live.add(task)
                self._running[job.id] = task
                task.add_done_callback(partial(self._finished, job.id))
            wait = REBOOK_EVERY if self._unbooked else MAX_IDLE
            wait = min(wait, max(0.0, self._next_requeue - self._clock()))
            if next_due is not None:
                wait = min(wait, max(0.0, next_due - self._clock()))
            await self._sleep(wait)

    def _finished(self, job_id: int, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._live.discard(task)
        self._running.pop(job_id, None)
        self._wake.set()  # a slot is free

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def process(self, job: Job) -> None:
        """Run one claimed job and book its outcome (done, retry later, or dead)."""
        with structlog.contextvars.bound_contextvars(
            uuid=job.uuid, _event=job.event, adapter=self.name, job_id=job.id
        ):
            try:
                if job.action in LIVE_ACTIONS:
                    with first_turn():  # ahead of post-call requests in the rate limiter
                        outcome = await self.pipeline.run(job)
                else:
                    outcome = await self.pipeline.run(job)
            except asyncio.CancelledError:
                await asyncio.shield(self._outbox.release(job.id))
                log.info("job interrupted by shutdown, left pending")
                raise
            except Permanent as exc:
                if job.action in LIVE_ACTIONS:
                    await self._put_aside(job, f"failed: {exc.reason}")
                else:
                    await self._dead(job, exc.reason)
            except RetryLater as exc:
                await self._retry(job, exc.reason, exc.retry_after)
            except StorageError as exc:
                await self._retry(job, f"database error: {exc}", None)
            except Exception as exc:
                log.exception("adapter raised an unexpected error; will retry")
                await self._retry(job, f"unexpected error: {type(exc).__name__}: {exc}", None)
            else:
                result = outcome.result
                skipped = isinstance(outcome, Skipped)
                await self._book(
                    job.id,
                    lambda: self._outbox.mark_done(job.id, result),
                    DONE,
                    label=SKIPPED_LABEL if skipped else DONE,
                )
                if skipped:
                    log.info("skipped", action=job.action, reason=outcome.reason)
                    return
                self._metrics.delivery_latency.labels(self.name).observe(
                    max(0.0, self._clock() - job.created_at)
                )
                log.info("delivered", action=job.action, result=result, attempts=job.attempts)

    async def _retry(self, job: Job, reason: str, retry_after: float | None) -> None:
        reason = REDACTOR(reason)
        now = self._clock()
        retry_at = now + self._backoff.delay(job.attempts, retry_after)
        if job.action in LIVE_ACTIONS:
            # Retried soon, and only while still useful: a live job holds its call's later
            # jobs back (per-call order), so it must never wait out a long backoff.
            retry_at = min(retry_at, now + max(LIVE_RETRY_MAX, retry_after or 0.0))
            useless = await self._live_useless(job, retry_at)
            if useless:
                await self._put_aside(job, f"{useless}; last error: {reason}")
                return
        elif self._backoff.gives_up(job.created_at, retry_at):
            await self._dead(job, f"gave up after {job.attempts} attempts: {reason}")
            return
        await self._book(job.id, lambda: self._outbox.mark_retry(job.id, retry_at, reason), PENDING)
        log.warning(
            "delivery failed, will retry",
            reason=reason,
            attempts=job.attempts,
            retry_in=round(retry_at - now, 1),
        )

    async def _live_useless(self, job: Job, retry_at: float) -> str | None:
        """Why a failed live job is not tried again: past ``live_max_age_seconds`` (a card
        would come too late; an ``over`` would hold the call's post-call job back longer,
        and that job still writes the call), or a card whose call went on without it."""
        if retry_at - job.created_at > self.pipeline.live_max_age:
            if job.action in CARD_ACTIONS:
                return "not retried: the card would come too late"
            return "not retried past live_max_age_seconds: the post-call job follows"
        if job.action not in CARD_ACTIONS:
            return None
        try:
            return await self.pipeline.card_useless(job)
        except StorageError:
            return None  # retried; the next try looks again

    async def _put_aside(self, job: Job, reason: str) -> None:
        """A live job that will not be done: done as skipped (a warning, never a dead job:
        the call's post-call jobs still log it)."""
        result = Skipped(REDACTOR(reason)).result
        await self._book(
            job.id, lambda: self._outbox.mark_done(job.id, result), DONE, label=SKIPPED_LABEL
        )
        log.warning("live action not done", action=job.action, reason=reason)

    async def _dead(self, job: Job, reason: str) -> None:
        reason = REDACTOR(reason)
        await self._book(job.id, lambda: self._outbox.mark_dead(job.id, reason), DEAD)
        log.error("job is dead", reason=reason, attempts=job.attempts)

    async def _book(
        self, job_id: int, write: Booking, status: str, label: str | None = None
    ) -> None:
        """Record an outcome; ``label`` is the jobs metric's status (e.g. skipped vs done)."""
        label = label or status
        try:
            held = await write()
        except StorageError as exc:
            # Kept in memory and booked when the database is back (the job stays 'running'
            # meanwhile; if the process dies first, the next start takes the job again).
            self._unbooked[job_id] = (write, label)
            log.error("could not record job outcome; will retry", status=status, error=str(exc))
        else:
            self._booked(job_id, label, held)

    def _booked(self, job_id: int, label: str, held: bool | None) -> None:
        if held is False:  # the lease expired meanwhile and another worker took the job
            log.warning("job outcome not recorded: its lease was lost", job_id=job_id)
            return
        self._metrics.jobs.labels(self.name, label).inc()

    async def _rebook(self) -> None:
        """Book the outcomes the database refused earlier; StorageError if it still does."""
        for job_id, (write, status) in list(self._unbooked.items()):
            held = await write()
            del self._unbooked[job_id]
            self._booked(job_id, status, held)
            log.info("job outcome recorded after the database recovered", job_id=job_id)
