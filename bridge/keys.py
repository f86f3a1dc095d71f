"""Typed keys of the aiohttp application (what the handlers may reach)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    pass

SETTINGS = web.AppKey("settings", "Settings")
CLOCK = web.AppKey("clock", Callable[[], float])
METRICS = web.AppKey("metrics", "Metrics")
DB = web.AppKey("storage", "Storage")  # bridge.store.Storage: every read and write
TOKEN = web.AppKey("webhook_token", str)
WRITER = web.AppKey("writer", "EventWriter")
DELIVERY = web.AppKey("delivery", "Delivery")
PBX_API = web.AppKey("onlinepbx_api", "OnlinePBX")
LINKS = web.AppKey("recording_links", "RecordingLinks")
RECORDINGS = web.AppKey("recordings", "Recordings")
INTAKE = web.AppKey("intake", "Intake")  # bridge.admin.intake: webhook outcomes per hour
