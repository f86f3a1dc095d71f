"""``pbx-bridge backfill``: recover calls of a past range (bridge.onlinepbx.commands)."""

from __future__ import annotations

import argparse
import asyncio

from bridge.cli.base import Commands, with_db
from bridge.onlinepbx import commands as onlinepbx
from bridge.settings import Settings


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    # It writes (events for `serve` to deliver), so it may create the database.
    return asyncio.run(
        with_db(settings, lambda db: onlinepbx.backfill(settings, db, args), create=True)
    )


def register(commands: Commands) -> None:
    onlinepbx.add_arguments(
        commands.add(
            "backfill",
            cmd_backfill,
            help="recover calls of a past range from onlinePBX's call history",
        )
    )
