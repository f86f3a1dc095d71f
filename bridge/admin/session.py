"""Per-request keys of the console and the process-wide session store."""

from __future__ import annotations

from aiohttp import web

from bridge.admin.auth import Sessions, new_session_key
from bridge.keys import CLOCK, DB, SETTINGS
from bridge.receive.access import client_ip, ip_allowed
from bridge.receive.throttle import BadTokenThrottle
from bridge.store.reports import reports_for

COOKIE = "pbx_admin_session"
CSRF_FIELD = "csrf_token"
SESSION_KEY_META = "admin_session_key"  # meta row: signs session cookies (see auth.py)

# Repeated wrong passwords from one address: 5 within 5 minutes block it for 5 minutes.
LOGIN_LIMIT, LOGIN_WINDOW, LOGIN_BLOCK = 5, 300.0, 300.0

NONCE = web.RequestKey("admin_nonce", str)
LANG = web.RequestKey("admin_lang", str)
CSRF = web.RequestKey("admin_csrf", str)  # the session's CSRF token, for the page's forms
SESSIONS = web.AppKey("admin_sessions", dict)  # {"store": Sessions}, filled on first use
LOGIN_THROTTLE = web.AppKey("admin_login_throttle", BadTokenThrottle)
# The configured adapters, looked up once: the registry reads the entry points each time
# (15 ms a call on a loaded machine: most of the outbox and settings pages' time).
ADAPTERS = web.AppKey("admin_adapters", list)


async def sessions(request: web.Request) -> Sessions:
    """The session store, created on first use from the key kept in the database."""
    holder = request.config_dict[SESSIONS]
    if "store" not in holder:
        config = request.config_dict
        key = await config[DB].put_meta_if_absent(SESSION_KEY_META, new_session_key())
        # setdefault: another request may have created it while this one awaited the key.
        store = Sessions(
            key.encode(), config[SETTINGS].admin, reports_for(config[DB]), config[CLOCK]
        )
        holder.setdefault("store", store)
    return holder["store"]


def sender(request: web.Request) -> str:
    server = request.config_dict[SETTINGS].server
    return client_ip(request.remote, request.headers.get("X-Forwarded-For"), server.trusted_proxies)


def is_https(request: web.Request) -> bool:
    """Secure cookies when the page is served over https (directly, by a trusted proxy, or
    because ``server.public_url`` says so)."""
    if request.secure:
        return True
    server = request.config_dict[SETTINGS].server
    if (server.public_url or "").startswith("https://"):
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    trusted = bool(server.trusted_proxies) and ip_allowed(
        request.remote or "", server.trusted_proxies
    )
    return proto == "https" and trusted
