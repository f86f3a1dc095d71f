"""``POST /webhooks/onlinepbx/{token}``: the ack path.

It never waits on a CRM: parse, check, commit the event and its jobs (group commit), answer.
A 200 means the event is on disk; a database failure answers 503 so onlinePBX (or whoever
replays it) knows it was not taken.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from aiohttp import web

from bridge.keys import CLOCK, INTAKE, METRICS, SETTINGS, TOKEN, WRITER
from bridge.metrics import event_label
from bridge.receive.access import client_ip, domain_allowed, ip_allowed, token_ok
from bridge.receive.parsing import RequestRejected, read_fields
from bridge.receive.throttle import BadTokenThrottle
from bridge.receive.validate import validate
from bridge.store.db import StorageError

log = structlog.get_logger("bridge.receive")
THROTTLE = web.AppKey("bad_token_throttle", BadTokenThrottle)


BODY_SECONDS = 10.0  # a client still sending its body after this long is cut off (slowloris)


async def read_body_in_time(request: web.Request, max_bytes: int) -> dict[str, Any]:
    """The fields, refusing a declared oversize body before reading a byte of it and a body
    that trickles in too slowly; memory stays within ``max_bytes`` per request."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise RequestRejected(413, "too_large", f"body is larger than {max_bytes} bytes")
    try:
        async with asyncio.timeout(BODY_SECONDS):
            return await read_fields(request, max_bytes)
    except TimeoutError as exc:
        raise RequestRejected(
            408, "body_timeout", f"body not received within {BODY_SECONDS:g} seconds"
        ) from exc


def _note(
    request: web.Request, outcome: str, sender: str, status: int = 0, detail: str = ""
) -> None:
    """Count the outcome for the admin console (bridge/admin/intake.py): memory only here."""
    intake = request.app.get(INTAKE)
    if intake is not None:
        intake.note(outcome, sender=sender, status=status, detail=detail)


def _reject(exc: RequestRejected) -> web.Response:
    # After a refused body the connection is closed: what is left of it is never read.
    headers = {"Connection": "close"} if exc.status in (408, 413) else None
    return web.json_response(exc.body(), status=exc.status, headers=headers)


async def handle_webhook(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS].server
    metrics = request.app[METRICS]
    sender = client_ip(
        request.remote, request.headers.getall("X-Forwarded-For", []), settings.trusted_proxies
    )
    guard = request.app[THROTTLE]
    if not token_ok(request.match_info.get("token", ""), request.app[TOKEN]):
        # The right token always gets in (see throttle.py); wrong ones from a blocked
        # address get 429, with no log line each.
        wait = guard.retry_after(sender)
        if wait is not None:
            metrics.events.labels("-", "throttled").inc()
            _note(request, "throttled", sender, 429)
            return web.json_response(
                {"ok": False, "error": "too_many_requests", "detail": "too many wrong tokens"},
                status=429,
                headers={"Retry-After": str(int(wait) + 1)},
            )
        metrics.events.labels("-", "bad_token").inc()
        _note(request, "bad_token", sender, 404)
        if guard.miss(sender):
            log.warning("address blocked after repeated wrong tokens", ip=sender)
        else:
            log.warning("webhook with a wrong token", ip=sender)
        return web.json_response({"ok": False, "error": "not_found"}, status=404)
    if not ip_allowed(sender, settings.allowed_ips):
        metrics.events.labels("-", "forbidden").inc()
        _note(request, "ip_not_allowed", sender, 403)
        log.warning("webhook from an address not in allowed_ips", ip=sender)
        return web.json_response(
            {"ok": False, "error": "forbidden", "detail": "address not allowed"}, status=403
        )
    try:
        fields = await read_body_in_time(request, settings.max_body_bytes)
        incoming = validate(fields, request.app[CLOCK](), request.app[SETTINGS].onlinepbx.domain)
    except RequestRejected as exc:
        metrics.events.labels("-", "rejected").inc()
        _note(request, exc.error, sender, exc.status, exc.detail)
        log.warning("webhook rejected", status=exc.status, error=exc.error, detail=exc.detail)
        return _reject(exc)
    bound: dict[str, Any] = {"uuid": incoming.uuid, "_event": incoming.event}
    if not domain_allowed(incoming.domain, settings.allowed_domains):
        metrics.events.labels(event_label(incoming.event), "forbidden").inc()
        _note(request, "domain_not_allowed", sender, 403, incoming.domain)
        log.warning("webhook from a domain not in allowed_domains", domain=incoming.domain, **bound)
        return web.json_response(
            {"ok": False, "error": "forbidden", "field": "domain", "detail": "domain not allowed"},
            status=403,
        )
    try:
        stored = await request.app[WRITER].submit(incoming)
    except StorageError as exc:
        metrics.events.labels(event_label(incoming.event), "storage_error").inc()
        _note(request, "storage_error", sender, 503)
        log.error("could not store webhook; answered 503", error=str(exc), **bound)
        return web.json_response(
            {
                "ok": False,
                "error": "storage_unavailable",
                "detail": "the event could not be stored; send it again later",
            },
            status=503,
        )
    outcome = "duplicate" if stored.duplicate else "stored"
    metrics.events.labels(event_label(incoming.event), outcome).inc()
    _note(request, "duplicate" if stored.duplicate else "accepted", sender)
    # DEBUG: one line per accepted webhook cost ~20% of ingest throughput (BENCHMARKS.md);
    # rejections, storage errors and every delivery outcome are still logged at INFO+.
    log.debug("webhook " + outcome, jobs=stored.jobs, **bound)
    return web.json_response({"ok": True, "duplicate": stored.duplicate, "jobs": stored.jobs})
