"""Locks that span processes, for state several bridge processes share (OAuth token pairs),
and :class:`KeyLocks`, one in-process lock per key (a phone number, a call).

``pbx-bridge check`` run beside ``serve``, or two ``serve`` processes on one database, must not
both spend one single-use refresh token. The token code holds :meth:`ProcessLocks.hold` around
"re-read the stored pair, refresh if still needed, store it".

The interface is one method, so a storage backend can bring its own: a database object with a
``locks`` attribute (e.g. PostgreSQL advisory locks) is used as is; for SQLite the default is an
``fcntl`` lock file next to the database. A file lock, not ``BEGIN IMMEDIATE``: a refresh is an
HTTP round trip, and holding SQLite's write lock that long would stall every webhook's commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

POLL = 0.02  # seconds between tries of a lock another process holds
DEFAULT_WAIT = 60.0  # longest wait for a lock (a refresh is bounded by the HTTP timeout)


class LockTimeout(Exception):
    """Another process held the lock for longer than the wait allowed."""


@runtime_checkable
class ProcessLocks(Protocol):
    """Named exclusive locks shared by every process using one database."""

    def hold(self, name: str, wait: float = DEFAULT_WAIT) -> AbstractAsyncContextManager[None]:
        """Hold ``name`` (waiting up to ``wait`` seconds) for the body of an ``async with``."""
        ...


class FileLocks:
    """``fcntl.flock`` on one small file per lock name in ``<database>.locks/``.

    A flock belongs to an open file description, so two connections in one process exclude
    each other exactly as two processes do, and a killed process releases its locks.
    """

    def __init__(self, directory: Path) -> None:
        self._dir = directory

    @classmethod
    def beside(cls, database_path: str | Path) -> FileLocks:
        path = Path(database_path)
        if str(path) == ":memory:":  # a private database: no other process can share it
            return cls(Path(os.environ.get("TMPDIR", "/tmp")) / f"pbx-bridge-{os.getpid()}.locks")
        return cls(path.with_name(path.name + ".locks"))

    def _file(self, name: str) -> Path:
        digest = hashlib.sha256(name.encode()).hexdigest()[:24]
        return self._dir / f"{digest}.lock"

    @contextlib.asynccontextmanager
    async def hold(self, name: str, wait: float = DEFAULT_WAIT) -> AsyncIterator[None]:
        self._dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self._file(name), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        held = f"lock {name!r} held elsewhere for {wait:.0f} s"
                        raise LockTimeout(held) from None
                    await asyncio.sleep(POLL)  # never block the event loop on another process
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


class KeyLocks:
    """One asyncio lock per key, in this process: ``async with locks.hold(key)`` runs one body
    at a time per key and others beside it. A key's lock is dropped once nobody holds or waits
    for it, so a long-running process keeps no lock per number or call it ever saw."""

    def __init__(self) -> None:
        self._held: dict[str, tuple[asyncio.Lock, int]] = {}  # key → (lock, holders + waiters)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._held.get(key, (asyncio.Lock(), 0))
        self._held[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._held[key]
            if users == 1:
                del self._held[key]
            else:
                self._held[key] = (lock, users - 1)

    def __len__(self) -> int:
        """How many keys are held or waited for now."""
        return len(self._held)


def locks_for(db: Any) -> ProcessLocks:
    """The database's own locks (``db.locks``) when its backend has them, else lock files."""
    own = getattr(db, "locks", None)
    if isinstance(own, ProcessLocks):
        return own
    return FileLocks.beside(getattr(db, "path", ":memory:"))
