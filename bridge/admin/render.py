"""Rendering a page: the template's own values plus what every page needs."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp_jinja2
from aiohttp import web

from bridge.admin.i18n import WORDS
from bridge.admin.session import CSRF, CSRF_FIELD, LANG, NONCE
from bridge.keys import SETTINGS


def ago(seconds: float | None, lang: str) -> str:
    """``5 min`` / ``5 мин``: the largest whole unit."""
    if seconds is None:
        return WORDS[lang]["never"]
    seconds = max(0, int(seconds))
    units = (("d", "д", 86400), ("h", "ч", 3600), ("min", "мин", 60), ("s", "с", 1))
    for en, ru, size in units:
        if seconds >= size or size == 1:
            return f"{seconds // size} {ru if lang == 'ru' else en}"
    return ""


def render(
    request: web.Request, template: str, context: dict[str, Any], status: int = 200
) -> web.Response:
    zone = ZoneInfo(request.config_dict[SETTINGS].schedule.timezone)
    lang = request.get(LANG, "en")

    def dt(ts: float | None) -> str:
        if ts is None:
            return "—"
        return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M:%S")

    base = {
        "lang": lang,
        "t": WORDS[lang],
        "csrf_field": CSRF_FIELD,
        "csrf": request.get(CSRF, ""),
        "logged_in": request.get(NONCE) is not None,
        "path": request.path,
        "dt": dt,
        "ago": lambda ts, now: ago(None if ts is None else now - ts, lang),
        "secs": lambda s: ago(s, lang),
    }
    return aiohttp_jinja2.render_template(template, request, {**base, **context}, status=status)


def message(request: web.Request, status: int, key: str, **values: Any) -> web.Response:
    """A short page with one message from the word list (an error, a refusal)."""
    text = WORDS[request.get(LANG, "en")][key].format(**values)
    return render(request, "message.html", {"message": text}, status=status)
