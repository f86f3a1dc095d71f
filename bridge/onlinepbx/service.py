"""Wiring into the aiohttp app: two ``cleanup_ctx`` steps and what they leave in the app.

``recordings_ctx`` runs after the store opens and before delivery starts (the pipeline needs
the link signer); ``sweep_ctx`` runs after delivery (it submits through the event writer).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import structlog
from aiohttp import web

from bridge.keys import CLOCK, DB, DELIVERY, LINKS, PBX_API, PLANNER, RECORDINGS, SETTINGS, WRITER
from bridge.onlinepbx.client import OnlinePBX
from bridge.onlinepbx.links import RecordingLinks, signing_key
from bridge.onlinepbx.reconcile import Reconciler, RecoveryWriter, sweep_forever
from bridge.onlinepbx.recordings import Recordings
from bridge.redact import REDACTOR
from bridge.settings import Settings
from bridge.store import Storage

log = structlog.get_logger("bridge.onlinepbx")


def setup_problems(settings: Settings) -> list[str]:
    """Why recordings will not get stable links (empty: they will)."""
    pbx = settings.onlinepbx
    problems = []
    if not pbx.enabled:
        problems.append(
            "[onlinepbx] domain and api_key are not set: CRMs get onlinePBX's own recording"
            " links, which stop playing about 30 minutes after the call, and calls whose"
            " webhook was lost are not recovered"
        )
    if not settings.server.public_url:
        problems.append(
            "[server] public_url is not set: CRMs get onlinePBX's own recording links,"
            " which stop playing about 30 minutes after the call"
        )
    return problems


async def recording_links(storage: Storage, settings: Settings) -> RecordingLinks | None:
    """The link signer, or None when links cannot be stable (see :func:`setup_problems`)."""
    if not settings.onlinepbx.enabled or not settings.server.public_url:
        return None
    key = await signing_key(storage, settings)
    REDACTOR.add(key)
    days = settings.onlinepbx.recording_link_days
    return RecordingLinks(key, settings.server.public_url, days * 86_400)


async def recordings_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, db = app[SETTINGS], app[DB]
    for problem in setup_problems(settings):
        log.warning(problem)
    if not settings.onlinepbx.enabled:
        yield
        return
    api = OnlinePBX(settings.onlinepbx, db)
    app[PBX_API] = api
    recordings = None
    try:  # from here: a failed start (the signing key not stored) still closes the client
        links = await recording_links(db, settings)
        if links is not None:
            app[LINKS] = links
            recordings = Recordings(links, api, settings.onlinepbx.recording_mode, app[CLOCK])
            app[RECORDINGS] = recordings
        yield
    finally:
        if recordings is not None:
            await recordings.aclose()
        await api.aclose()


def app_reconciler(app: web.Application) -> Reconciler:
    """The server's reconciler: recovered calls that rang through the bridge share the
    webhooks' writer (and group commit); the others get post-call jobs only."""
    db, clock = app[DB], app[CLOCK]
    writer = RecoveryWriter(db, app[PLANNER], app[DELIVERY].wake, clock, seen=app[WRITER])
    return Reconciler(app[PBX_API], writer, db, clock)


async def sweep_ctx(app: web.Application) -> AsyncIterator[None]:
    pbx = app[SETTINGS].onlinepbx
    api = app.get(PBX_API)
    if api is None or pbx.sweep_interval_minutes == 0:
        yield
        return
    reconciler = app_reconciler(app)
    task = asyncio.create_task(
        sweep_forever(reconciler, pbx.sweep_interval_minutes * 60, pbx.sweep_lookback_hours * 3600)
    )
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
