"""The aiohttp application factory. Startup and shutdown live in ``cleanup_ctx``:
open the store → start delivery → serve; on SIGTERM the reverse, in-flight CRM calls finishing
within ``server.shutdown_grace_seconds`` and everything else left pending for the next start.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import structlog
from aiohttp import web

from bridge.admin import PREFIX as ADMIN_PREFIX
from bridge.admin import Intake, admin_app, intake_ctx
from bridge.alerts import alerts_ctx
from bridge.deliver.service import Delivery, job_planner
from bridge.keys import (
    CLOCK,
    DB,
    DELIVERY,
    INTAKE,
    LINKS,
    METRICS,
    PLANNER,
    SETTINGS,
    TOKEN,
    TOKEN_NEW,
    WRITER,
)
from bridge.metrics import Metrics
from bridge.onlinepbx.links import ROUTE as RECORDING_ROUTE
from bridge.onlinepbx.recordings import handle_recording
from bridge.onlinepbx.service import recordings_ctx, sweep_ctx
from bridge.ops import bearer_ok, split_listeners, unauthorized
from bridge.receive.throttle import BadTokenThrottle
from bridge.receive.webhook import THROTTLE, handle_webhook
from bridge.redact import REDACTOR
from bridge.registry import ConfiguredAdapter, configured
from bridge.settings import Settings, SettingsError
from bridge.store import EventWriter, Outbox, Pruner, Storage, StorageError, open_storage
from bridge.texts import check_templates

log = structlog.get_logger("bridge")

WEBHOOK_PATH = "/webhooks/onlinepbx/{token}"
ADAPTERS = web.AppKey("adapters", list[ConfiguredAdapter])


async def webhook_token(db: Storage, settings: Settings) -> tuple[str, bool]:
    """The configured token, else the one generated on first start; (token, generated now)."""
    if settings.server.webhook_token is not None:
        return settings.server.webhook_token.get_secret_value(), False
    fresh = secrets.token_urlsafe(24)
    token = await db.put_meta_if_absent("webhook_token", fresh)
    return token, token == fresh


async def _storage(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = await open_storage(settings.storage)
    try:
        await db.hold_instance()  # SQLite: a second serve on one file stops here
        token, generated = await webhook_token(db, settings)
        # Only EXPIRED leases: jobs another live replica is running stay its own.
        requeued = await Outbox(db, app[CLOCK]).requeue_expired()
    except BaseException:
        await db.close()
        raise
    app[DB] = db
    REDACTOR.add(token)
    app[TOKEN] = token
    app[TOKEN_NEW] = generated
    log.info("storage open", backend=db.backend, where=db.where, schema=db.migrated[1])
    if requeued:
        log.info("jobs whose worker died are pending again", count=requeued)
    try:
        yield
    finally:
        await db.close()


async def _delivery(app: web.Application) -> AsyncIterator[None]:
    settings, db = app[SETTINGS], app[DB]
    adapters = app[ADAPTERS]
    delivery = Delivery.build(
        adapters, settings, db, app[METRICS], app[CLOCK], links=app.get(LINKS)
    )
    app[DELIVERY] = delivery
    app[PLANNER] = job_planner(adapters)
    app[WRITER] = EventWriter(db, app[PLANNER], delivery.wake, app[CLOCK])
    db.listen(delivery.wake)  # jobs another replica stored (PostgreSQL's LISTEN/NOTIFY)
    try:
        # Inside the try: a start that fails (an adapter's setup) still closes the adapters;
        # aiohttp unwinds only the steps that started.
        await delivery.start()
        log.info("delivery started", adapters=[a.name for a in adapters])
        yield
    finally:
        await delivery.stop(settings.server.shutdown_grace_seconds)
        log.info("delivery stopped; unfinished jobs stay pending")


async def _retention(app: web.Application) -> AsyncIterator[None]:
    pruner = Pruner(app[DB], app[SETTINGS].storage.retention_days, app[CLOCK])
    pruner.start()
    try:
        yield
    finally:
        await pruner.stop()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def readyz(request: web.Request) -> web.Response:
    """Ready when the database takes writes and the last event commit did not fail: after a
    failed one, only an event-shaped probe commit (or the next event) turns it green."""
    checks: dict[str, str] = {}
    db, writer = request.app[DB], request.app[WRITER]
    try:
        if writer.last_error is None:
            await db.ping_write(request.app[CLOCK]())
        else:
            await db.probe_event_write(request.app[CLOCK]())
            writer.last_error = None
        checks["database"] = "writable"
    except StorageError as exc:
        failed = writer.last_error or str(exc)
        checks["database"] = f"not writable: {REDACTOR(failed)}"
    delivery = request.app[DELIVERY]
    checks["workers"] = "alive" if delivery.alive else "stopped"
    ok = checks["database"] == "writable" and delivery.alive
    return web.json_response({"ok": ok, "checks": checks}, status=200 if ok else 503)


async def metrics_page(request: web.Request) -> web.Response:
    # Outbox counts and adapter names are not for the internet (docs/DEPLOY.md).
    if not bearer_ok(request, request.app[SETTINGS].server.metrics_token):
        return unauthorized()
    metrics = request.app[METRICS]
    try:
        counts = await Outbox(request.app[DB]).counts()
    except Exception:  # the page still shows the counters when the DB is unhappy
        counts = {}
    for adapter, by_status in counts.items():
        for status, n in by_status.items():
            metrics.outbox.labels(adapter, status).set(n)
    return web.Response(body=metrics.render(), content_type="text/plain", charset="utf-8")


@web.middleware
async def json_errors(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every error answer is JSON; an unexpected exception is logged, never shown."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return web.json_response(
            {"ok": False, "error": exc.reason.lower().replace(" ", "_")}, status=exc.status
        )
    except Exception:
        log.exception("unhandled error", path=REDACTOR(request.path))
        return web.json_response({"ok": False, "error": "internal_error"}, status=500)


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> web.Application:
    """Build the app; SettingsError if the adapter tables or templates are invalid."""
    problems = check_templates(settings.schedule.templates)
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    app = web.Application(
        client_max_size=settings.server.max_body_bytes,
        middlewares=[json_errors, split_listeners],
    )
    app[SETTINGS] = settings
    app[CLOCK] = clock
    app[METRICS] = Metrics()
    app[ADAPTERS] = configured(settings.adapters)
    app[THROTTLE] = BadTokenThrottle()
    app[INTAKE] = Intake(clock)
    app.cleanup_ctx.append(_storage)
    app.cleanup_ctx.append(intake_ctx)
    app.cleanup_ctx.append(recordings_ctx)
    app.cleanup_ctx.append(_delivery)
    app.cleanup_ctx.append(sweep_ctx)
    app.cleanup_ctx.append(_retention)
    app.cleanup_ctx.append(alerts_ctx)
    app.router.add_post(WEBHOOK_PATH, handle_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_page)
    app.router.add_get(RECORDING_ROUTE, handle_recording)
    if settings.admin.enabled:  # otherwise every /admin/ URL is a plain 404
        app.add_subapp(ADMIN_PREFIX, admin_app(settings))
    return app
