"""Who may see the console: the session check, CSRF on every POST, and safe headers.

An unauthenticated request to any page gets a redirect to the login page (a GET) or a 403
(anything else): no data either way. Every state-changing request (a POST) must carry the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``); the login form
itself has no session yet, so it is guarded by SameSite=Strict and an Origin check instead.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from bridge.admin.i18n import LANG_COOKIE, LANGS, choose
from bridge.admin.render import message
from bridge.admin.session import COOKIE, CSRF, CSRF_FIELD, LANG, NONCE, sessions
from bridge.keys import SETTINGS
from bridge.redact import REDACTOR
from bridge.store import StorageError

log = structlog.get_logger("bridge.admin")

PUBLIC = {"admin_login", "admin_login_post", "admin_static"}

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # no-referrer would make Chromium send Origin: null
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if not origin or origin == "null":
        return origin is None
    return origin.split("://", 1)[-1].rstrip("/") == request.host


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[LANG] = choose(request, request.config_dict[SETTINGS].schedule.locale)
    route = request.match_info.route.name
    try:
        store = await sessions(request)
        nonce = await store.nonce(request.cookies.get(COOKIE))
    except StorageError as exc:  # cannot tell a revoked session: let none in
        log.warning("console: storage unavailable", path=request.path, error=REDACTOR(str(exc)))
        return _with_headers(message(request, 503, "storage", detail=REDACTOR(str(exc))))
    request[NONCE] = nonce
    if nonce is not None:
        request[CSRF] = store.csrf(nonce)
    if request.method == "POST":
        # Parsed once here (aiohttp keeps it): a body that does not parse is a 400, not a 500.
        try:
            await request.post()
        except (ValueError, UnicodeDecodeError, LookupError, HttpProcessingError):
            detail = "the form body cannot be read"
            return _with_headers(message(request, 400, "bad_input", detail=detail))
    if route not in PUBLIC:
        if nonce is None:
            if request.method in ("GET", "HEAD") and route != "admin_live_stream":
                target = request.app.router["admin_login"].url_for()
                raise web.HTTPSeeOther(target.with_query(next=request.path_qs))
            return _with_headers(message(request, 403, "not_found"))
        if request.method == "POST":
            form = await request.post()
            token = form.get(CSRF_FIELD) or request.headers.get("X-CSRF-Token")
            if not store.csrf_ok(nonce, token if isinstance(token, str) else None):
                return _with_headers(message(request, 403, "csrf"))
    elif request.method == "POST" and not _same_origin(request):
        return _with_headers(message(request, 403, "csrf"))
    try:
        response = await handler(request)
    except StorageError as exc:  # a clear page, never a 500 (e.g. the database is away)
        log.warning("console: storage unavailable", path=request.path, error=REDACTOR(str(exc)))
        return _with_headers(message(request, 503, "storage", detail=REDACTOR(str(exc))))
    if request.query.get("lang") in LANGS:
        response.set_cookie(
            LANG_COOKIE, request[LANG], max_age=365 * 86400, httponly=True, samesite="Strict"
        )
    return _with_headers(response)


def _with_headers(response: web.StreamResponse) -> web.StreamResponse:
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response
