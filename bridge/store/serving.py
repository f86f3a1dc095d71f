"""One serving process per SQLite file.

A second ``pbx-bridge serve`` on the same database would put the first one's in-flight jobs
back to pending at its start (they look left over by a dead process) and deliver them again,
even when it then fails to bind its port. The serving process therefore holds an exclusive
``flock`` on ``<database>.serve.lock`` from before it touches the outbox until it exits; the
kernel drops the lock when the process dies, however it dies, so a crash never leaves a
stale lock behind. CLI commands (``outbox``, ``check``) do not take it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_MODE = 0o600


class AlreadyServed(Exception):
    """Another process serves this database; the message names it."""


class ServeLock:
    def __init__(self, database: str | Path) -> None:
        self.database = database
        self.path = Path(f"{database}.serve.lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or AlreadyServed naming the other process."""
        if str(self.path).startswith(":memory:"):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, LOCK_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise AlreadyServed(
                f"another pbx-bridge (pid {holder}) is serving {self.database} already; stop"
                " it first (two processes on one database would deliver each other's jobs"
                " twice)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor drops the flock
