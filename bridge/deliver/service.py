"""Builds the configured adapters, their pipelines and workers; plans jobs for events."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection

import structlog

from bridge.adapter.contract import (
    ANSWERED,
    CREATE_TASK,
    LOG_CALL,
    OVER,
    RINGING,
    Adapter,
    AdapterContext,
    supports,
)
from bridge.call import CALL_ANSWERED, CALL_END, CALL_MISSED, CALL_START, CALL_USER_START
from bridge.deliver.backoff import Backoff
from bridge.deliver.pipeline import Pipeline
from bridge.deliver.worker import AdapterWorker
from bridge.metrics import Metrics, code_label
from bridge.onlinepbx.links import RecordingLinks
from bridge.phones import NumberParser
from bridge.redact import REDACTOR
from bridge.registry import ConfiguredAdapter
from bridge.settings import Settings
from bridge.store import AdapterState, LocalRecords, Outbox, Storage
from bridge.texts import Texts

log = structlog.get_logger("bridge.deliver")

# What each onlinePBX event causes. ``over`` is planned before the post-call action so that,
# the two being of the same event, the live lane closes the card first (jobs of one call run
# in this order, see Outbox.claim).
ACTIONS_FOR_EVENT = {
    CALL_START: (RINGING,),  # outbound: the caller's card; inbound: only a direct extension
    CALL_USER_START: (RINGING,),
    CALL_ANSWERED: (ANSWERED,),
    CALL_END: (OVER, LOG_CALL),
    CALL_MISSED: (OVER, CREATE_TASK),
}


def job_planner(adapters: list[ConfiguredAdapter]) -> Callable[[str], list[tuple[str, str]]]:
    """event type → [(adapter name, action)], from each adapter's ``events`` setting and the
    actions its class supports (a live action it lacks causes no job)."""
    plans: dict[str, list[tuple[str, str]]] = {}
    for event, actions in ACTIONS_FOR_EVENT.items():
        plans[event] = [
            (a.name, action)
            for action in actions
            for a in adapters
            if action in a.settings.events and supports(a.cls, action)
        ]
    return lambda event: plans.get(event.partition(":")[0], [])


def without(
    planner: Callable[[str], list[tuple[str, str]]], actions: Collection[str]
) -> Callable[[str], list[tuple[str, str]]]:
    """The same plan minus ``actions``: backfill's ``--logs-only`` (no create_task), and a
    recovered call the bridge never saw ring (no live action, see ``onlinepbx.reconcile``)."""
    return lambda event: [(a, action) for a, action in planner(event) if action not in actions]


def build_adapter(
    configured: ConfiguredAdapter,
    settings: Settings,
    storage: Storage,
    metrics: Metrics,
    clock: Callable[[], float] = time.time,
) -> Adapter:
    REDACTOR.add(*configured.settings.secrets())
    counter = metrics.crm_requests
    ctx = AdapterContext(
        name=configured.name,
        state=AdapterState(storage, configured.name, clock),
        texts=Texts(
            settings.schedule.locale, settings.schedule.templates, settings.schedule.timezone
        ),
        redactor=REDACTOR,
        records=LocalRecords(storage),
        on_response=lambda code: counter.labels(configured.name, code_label(code)).inc(),
        clock=clock,
        log=structlog.get_logger(f"adapters.{configured.name}").bind(adapter=configured.name),
    )
    return configured.cls(configured.settings, ctx)


class Delivery:
    def __init__(self, workers: list[AdapterWorker], adapters: list[Adapter]) -> None:
        self.workers = {w.name: w for w in workers}
        self.adapters = adapters

    @classmethod
    def build(
        cls,
        configured: list[ConfiguredAdapter],
        settings: Settings,
        storage: Storage,
        metrics: Metrics,
        clock: Callable[[], float] = time.time,
        links: RecordingLinks | None = None,
    ) -> Delivery:
        parser = NumberParser(
            settings.numbers.default_region, settings.numbers.extension_max_digits
        )
        d = settings.delivery
        outbox = Outbox(storage, clock)
        workers, adapters = [], []
        for item in configured:
            adapter = build_adapter(item, settings, storage, metrics, clock)
            pipeline = Pipeline(
                item.name,
                adapter,
                item.settings,
                storage=storage,
                parser=parser,
                texts=adapter.ctx.texts,
                schedule=settings.schedule,
                clock=clock,
                links=links,
                live_max_age=d.live_max_age_seconds,
            )
            backoff = Backoff(
                d.retry_base_seconds, d.retry_max_delay_seconds, d.retry_max_age_hours * 3600
            )
            workers.append(
                AdapterWorker(
                    pipeline,
                    outbox,
                    backoff,
                    metrics,
                    concurrency=item.settings.concurrency,
                    clock=clock,
                )
            )
            adapters.append(adapter)
        return cls(workers, adapters)

    @property
    def alive(self) -> bool:
        return all(w.alive for w in self.workers.values())

    def wake(self, names: set[str]) -> None:
        """Wake the named adapters' workers ("*": every one)."""
        if "*" in names:
            names = set(self.workers)
        for name in names:
            worker = self.workers.get(name)
            if worker:
                worker.wake()

    async def start(self) -> None:
        for adapter in self.adapters:
            await adapter.setup()
        for worker in self.workers.values():
            worker.start()

    async def stop(self, grace: float) -> None:
        await asyncio.gather(*(w.stop(grace) for w in self.workers.values()))
        for adapter in self.adapters:
            try:
                await adapter.aclose()
            except Exception:
                log.exception("adapter did not close cleanly", adapter=adapter.ctx.name)
