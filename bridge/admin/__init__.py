"""The admin console at ``/admin/``: off (every URL 404) unless ``[admin]`` has a password.

Server-rendered with Jinja2 (through aiohttp-jinja2): pages work without JavaScript, the few
scripts and the stylesheet ship inside this package, nothing is fetched from a CDN.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bridge.admin.intake import Intake, intake_ctx
from bridge.admin.middleware import guard
from bridge.admin.routes import routes
from bridge.admin.session import (
    ADAPTERS,
    LOGIN_BLOCK,
    LOGIN_LIMIT,
    LOGIN_THROTTLE,
    LOGIN_WINDOW,
    SESSIONS,
)
from bridge.receive.throttle import BadTokenThrottle
from bridge.registry import configured
from bridge.settings import Settings

__all__ = ["PREFIX", "Intake", "admin_app", "intake_ctx"]

PREFIX = "/admin"
STATIC = Path(__file__).parent / "static"


def admin_app(settings: Settings) -> web.Application:
    """The console as a sub-application to mount at ``/admin``."""
    app = web.Application(middlewares=[guard])
    app[SESSIONS] = {}
    app[ADAPTERS] = configured(settings.adapters)
    app[LOGIN_THROTTLE] = BadTokenThrottle(LOGIN_LIMIT, LOGIN_WINDOW, LOGIN_BLOCK)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("bridge.admin", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_routes(routes)
    app.router.add_static("/static", STATIC, name="admin_static")
    return app
