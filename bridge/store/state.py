"""Small key-value stores adapters use through their context.

``crm_objects`` remembers what a CRM already holds for one call (contact id, call id, a
half-finished multi-step registration), so a retry or a redelivered webhook never creates a
second object. ``adapter_state`` keeps long-lived adapter data such as refreshed OAuth tokens,
so a restart does not log the bridge out. Both are ports of :class:`Storage`; an adapter
never sees the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.adapter.locks import ProcessLocks
    from bridge.store.ports import Storage


def call_key(domain: str, uuid: str) -> str:
    """The one key of a call's CRM ids: the event's stored (normalised) domain and uuid, as
    deduplication and retention use them, never the payload's raw spelling."""
    return f"{domain}/{uuid}"


class CallState:
    """What one adapter has created in its CRM for one call."""

    def __init__(
        self, storage: Storage, adapter: str, call_key: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._storage = storage
        self._adapter = adapter
        self._key = call_key
        self._clock = clock

    async def get(self, name: str) -> str | None:
        return await self._storage.call_record(self._adapter, self._key, name)

    async def put(self, name: str, value: str) -> None:
        await self._storage.put_call_record(self._adapter, self._key, name, value, self._clock())


class AdapterState:
    """Durable per-adapter values (OAuth token pairs, cached ids), and a lock shared by every
    process on the storage (one OAuth refresh at a time across replicas)."""

    def __init__(
        self, storage: Storage, adapter: str, clock: Callable[[], float] = time.time
    ) -> None:
        self._storage = storage
        self._adapter = adapter
        self._clock = clock

    async def get(self, key: str) -> str | None:
        return await self._storage.adapter_value(self._adapter, key)

    async def put(self, key: str, value: str) -> None:
        await self._storage.put_adapter_value(self._adapter, key, value, self._clock())

    @property
    def locks(self) -> ProcessLocks:
        """The storage's cross-process locks (the OAuth refresh holds one)."""
        return self._storage.locks

    def lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """Held by one process at a time across every replica (e.g. ``lock("oauth")``)."""
        return self._storage.lock(f"adapter:{self._adapter}:{name}")


class LocalRecords:
    """The ``local`` adapter's contacts, calls and tasks (its own tables, via the storage).

    Any adapter may use it to keep the calls it wrote inside the bridge; ``pbx-bridge calls``
    and ``tasks`` list them.
    """

    def __init__(self, storage: Storage) -> None:
        self._storage = storage

    @property
    def where(self) -> str:
        return self._storage.where

    async def contact(self, phone: str) -> dict[str, Any] | None:
        return await self._storage.local_contact(phone)

    async def add_contact(
        self, contact_id: str, phone: str, name: str, owner_id: str | None, created_at: str
    ) -> dict[str, Any]:
        return await self._storage.local_add_contact(contact_id, phone, name, owner_id, created_at)

    async def add(self, kind: str, row: dict[str, Any]) -> int:
        return await self._storage.local_add(kind, row)

    async def list(self, kind: str, limit: int = 50) -> list[dict[str, Any]]:
        return await self._storage.local_list(kind, limit)

    async def count(self, kind: str) -> int:
        return await self._storage.local_count(kind)

    # Calls in progress (the local adapter's live actions; the console and
    # ``pbx-bridge calls --live`` read them).

    async def ring(self, row: dict[str, Any]) -> None:
        await self._storage.local_live_ring(row)

    async def answer(self, row: dict[str, Any]) -> None:
        await self._storage.local_live_answer(row)

    async def end(self, call_key: str) -> bool:
        return await self._storage.local_live_end(call_key)

    async def live(self, limit: int = 200, since: float | None = None) -> list[dict[str, Any]]:
        return await self._storage.local_live_list(limit, since)
