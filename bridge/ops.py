"""The operator pages (``/metrics``, ``/readyz``, ``/healthz``) kept off the public side.

Two ways, both in docs/DEPLOY.md: ``server.metrics_token`` (``/metrics`` wants
``Authorization: Bearer <token>``), and ``server.metrics_listen`` (a second address, e.g.
``127.0.0.1:9101``, that alone serves ``/metrics``; the public one answers 404 for it).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from pydantic import SecretStr

from bridge.keys import SETTINGS

SCHEME = "bearer"
METRICS_PATH = "/metrics"
# What the separate operator address serves; everything else (webhooks, recordings, the
# console) stays on the public one.
OPERATOR_PATHS = frozenset({METRICS_PATH, "/readyz", "/healthz"})


def bearer_ok(request: web.Request, token: SecretStr | None) -> bool:
    """True when no token is configured, or the request carries it (constant-time compare)."""
    if token is None:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != SCHEME:
        return False
    return hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())


def unauthorized() -> web.Response:
    return web.json_response(
        {"ok": False, "error": "unauthorized", "detail": "send Authorization: Bearer <token>"},
        status=401,
        headers={"WWW-Authenticate": 'Bearer realm="pbx-bridge"'},
    )


def _local_port(request: web.Request) -> int | None:
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    return sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None


@web.middleware
async def split_listeners(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """With server.metrics_listen: /metrics only there, and only operator pages there."""
    listen = request.app[SETTINGS].server.metrics_listen
    if listen is not None:
        operator_side = _local_port(request) == listen.port
        allowed = request.path in OPERATOR_PATHS if operator_side else request.path != METRICS_PATH
        if not allowed:
            raise web.HTTPNotFound()
    return await handler(request)
