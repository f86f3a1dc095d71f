"""``pbx-bridge migrate``: bring the database to the latest schema (``serve`` does it too)."""

from __future__ import annotations

import argparse
import asyncio

from bridge.cli.base import Commands, with_db
from bridge.settings import Settings
from bridge.store import Storage
from bridge.store.migrations import LATEST


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    async def run(db: Storage) -> int:
        # Opening the storage applied what was pending, under the migration lock.
        before, after = db.migrated
        if before == after:
            print(f"{db.where}: schema version {after}, up to date")
        else:
            print(f"{db.where}: migrated from schema version {before} to {after}")
        return 0

    # A new SQLite file is created (every migration is pending on it), as on PostgreSQL where
    # a new schema is: `migrate` before the first `serve` is a deploy step, not a read.
    return asyncio.run(with_db(settings, run, create=True))


def register(commands: Commands) -> None:
    commands.add(
        "migrate",
        cmd_migrate,
        help=f"apply the pending schema migrations (latest: {LATEST}); serve does it at start",
    )
