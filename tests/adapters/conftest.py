"""Fixtures shared by the per-CRM adapter tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bridge.testing import AdapterHarness

OpenAdapter = Callable[..., Awaitable[AdapterHarness]]


@pytest.fixture
async def open_adapter(tmp_path) -> AsyncIterator[OpenAdapter]:
    """``await open_adapter(name, table, clock=…)``: an AdapterHarness closed after the test,
    texts in English."""
    async with contextlib.AsyncExitStack() as opened:

        async def open_(name: str, table: dict[str, Any], **settings: Any) -> AdapterHarness:
            settings.setdefault("schedule", {"locale": "en"})
            h = await AdapterHarness.open(tmp_path, name, table, **settings)
            opened.push_async_callback(h.close)
            return h

        yield open_
