"""Store: the SQLite file that holds every received event, the outbox of jobs, and CRM ids."""

from bridge.store.db import Database, StorageError

__all__ = ["Database", "StorageError"]
