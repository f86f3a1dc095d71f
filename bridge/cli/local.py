"""``pbx-bridge calls`` and ``pbx-bridge tasks``: what the local adapter wrote."""

from __future__ import annotations

import argparse
import asyncio

from bridge.cli.base import Commands, Run, emit, row_count, with_db
from bridge.registry import adapter_class
from bridge.settings import Settings
from bridge.store import Storage

CALL_COLUMNS = (
    "id",
    "started_at",
    "direction",
    "client",
    "extension",
    "line",
    "talk_seconds",
    "result",
    "user_id",
)
TASK_COLUMNS = ("id", "due_at", "client", "title", "user_id")


def cmd_list_local(kind: str) -> Run:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        # Through the registry, like any adapter: the core imports no adapter package.
        local = adapter_class("local")

        async def run(db: Storage) -> int:
            if kind == "calls":
                emit(await local.list_calls(db, args.limit), CALL_COLUMNS, args.json)
            else:
                emit(await local.list_tasks(db, args.limit), TASK_COLUMNS, args.json)
            return 0

        return asyncio.run(with_db(settings, run))

    return command


def register(commands: Commands) -> None:
    for kind in ("calls", "tasks"):
        p = commands.add(kind, cmd_list_local(kind), help=f"{kind} written by the local adapter")
        p.add_argument("--limit", type=row_count, default=50)
        p.add_argument("--json", action="store_true")
