"""Small key-value stores adapters use through their context.

``crm_objects`` remembers what a CRM already holds for one call (contact id, call id, a
half-finished multi-step registration), so a retry or a redelivered webhook never creates a
second object. ``adapter_state`` keeps long-lived adapter data such as refreshed OAuth tokens,
so a restart does not log the bridge out.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bridge.store.db import Database


def call_key(domain: str, uuid: str) -> str:
    """The one key of a call's CRM ids: the event's stored (normalised) domain and uuid, as
    deduplication and retention use them, never the payload's raw spelling."""
    return f"{domain}/{uuid}"


class CallState:
    """What one adapter has created in its CRM for one call."""

    def __init__(
        self, db: Database, adapter: str, call_key: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._db = db
        self._adapter = adapter
        self._key = call_key
        self._clock = clock

    async def get(self, name: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT value FROM crm_objects WHERE adapter = ? AND call_key = ? AND name = ?",
            (self._adapter, self._key, name),
        )
        return None if row is None else row[0]

    async def put(self, name: str, value: str) -> None:
        await self._db.write(
            "INSERT OR REPLACE INTO crm_objects (adapter, call_key, name, value, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (self._adapter, self._key, name, value, self._clock()),
        )


class AdapterState:
    """Durable per-adapter values (OAuth token pairs, cached ids)."""

    def __init__(self, db: Database, adapter: str, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._adapter = adapter
        self._clock = clock

    async def get(self, key: str) -> str | None:
        row = await self._db.fetchone(
            "SELECT value FROM adapter_state WHERE adapter = ? AND key = ?", (self._adapter, key)
        )
        return None if row is None else row[0]

    async def put(self, key: str, value: str) -> None:
        await self._db.write(
            "INSERT OR REPLACE INTO adapter_state (adapter, key, value, updated_at)"
            " VALUES (?, ?, ?, ?)",
            (self._adapter, key, value, self._clock()),
        )
