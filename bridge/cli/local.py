"""``pbx-bridge calls`` and ``pbx-bridge tasks``: what the local adapter wrote; ``calls --live``:
the calls in progress it keeps."""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, datetime
from typing import Any

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
LIVE_COLUMNS = ("since", "state", "direction", "client", "line", "ringing", "answered_by", "uuid")
LIVE_WINDOW = 3 * 3600.0  # a call with no end after this long is not shown as in progress


def _live_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            **r,
            "since": datetime.fromtimestamp(r["started_at"], UTC).isoformat(timespec="seconds"),
            "ringing": ",".join(r["ringing"]),
        }
        for r in rows
    ]


def cmd_list_local(kind: str) -> Run:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        # Through the registry, like any adapter: the core imports no adapter package.
        local = adapter_class("local")

        async def run(db: Storage) -> int:
            if kind == "calls" and args.live:
                rows = await local.list_live(db, args.limit, time.time() - LIVE_WINDOW)
                emit(rows if args.json else _live_rows(rows), LIVE_COLUMNS, args.json)
            elif kind == "calls":
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
        if kind == "calls":
            p.add_argument(
                "--live", action="store_true", help="the calls in progress (ringing or answered)"
            )
