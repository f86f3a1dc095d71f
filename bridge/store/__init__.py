"""Store: every received event, the outbox of jobs, CRM ids and bridge state, behind one seam.

:func:`open_storage` picks the backend from the settings: ``[storage] url`` (a PostgreSQL
URL, for several replicas) or else the SQLite file at ``[storage] path``. Callers use the
:class:`Storage` ports and the small views built on them (:class:`EventWriter`,
:class:`Outbox`, :class:`CallState`, :class:`AdapterState`, :func:`prune`); nothing outside this
package sees SQL or a connection.
"""

from __future__ import annotations

from typing import Any

from bridge.redact import REDACTOR
from bridge.store.events import EventWriter, IncomingEvent, Stored
from bridge.store.outbox import DEAD, DONE, PENDING, RUNNING, STATUSES, Job, Outbox
from bridge.store.ports import Storage, StorageBusy, StorageError, url_passwords
from bridge.store.retention import Pruner, prune
from bridge.store.state import AdapterState, CallState, LocalRecords

__all__ = [
    "DEAD",
    "DONE",
    "PENDING",
    "RUNNING",
    "STATUSES",
    "AdapterState",
    "CallState",
    "EventWriter",
    "IncomingEvent",
    "Job",
    "LocalRecords",
    "Outbox",
    "Pruner",
    "Storage",
    "StorageBusy",
    "StorageError",
    "Stored",
    "open_storage",
    "prune",
]


async def open_storage(settings: Any, **kw: Any) -> Storage:
    """The storage ``settings`` (a ``StorageSettings``) names, migrated to the latest schema.

    StorageError when it cannot be opened (unreachable server, newer schema…), with a
    message safe to show (no password).
    """
    if settings.url is not None:
        from bridge.store.postgres import PostgresStorage  # asyncpg only when it is used

        url = settings.url.get_secret_value()
        REDACTOR.add(*url_passwords(url))  # a library's log line quoting the DSN is masked too
        return await PostgresStorage.open(url, lease_seconds=settings.lease_seconds, **kw)
    from bridge.store.sqlite import SQLiteStorage

    try:
        return await SQLiteStorage.open(
            settings.path,
            busy_timeout_ms=settings.busy_timeout_ms,
            lease_seconds=settings.lease_seconds,
            **kw,
        )
    except StorageError:
        raise
    except Exception as exc:  # sqlite3.Error, OSError: say which file
        raise StorageError(f"cannot open the database {settings.path}: {exc}") from exc
