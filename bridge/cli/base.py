"""What every subcommand module shares: registration, output tables, the database, URLs.

A subcommand lives in its own module of ``bridge.cli`` with a ``register(commands)`` function;
``bridge.cli.COMMAND_MODULES`` lists the modules (see /work/coord/notes.md for the recipe).
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bridge.app import WEBHOOK_PATH
from bridge.settings import Settings
from bridge.store.db import Database

Run = Callable[[Settings, argparse.Namespace], int]
CONFIG_HELP = "settings TOML file (default: $PBX_BRIDGE_CONFIG, else embedded defaults)"


def config_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """``--config/-c`` on the top parser and on every subcommand.

    On a subcommand the default is SUPPRESS: argparse copies a subparser's namespace over the
    top-level one, so a ``None`` default there would erase ``pbx-bridge -c x.toml serve``.
    """
    parser.add_argument(
        "--config",
        "-c",
        metavar="FILE",
        help=CONFIG_HELP,
        default=None if top_level else argparse.SUPPRESS,
    )


class Commands:
    """The subcommands of one parser (or of one command group such as ``outbox``)."""

    def __init__(self, action: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
        self._action = action

    def add(
        self,
        name: str,
        run: Run | None = None,
        *,
        help: str,
        needs_settings: bool = True,
        **kwargs: Any,
    ) -> argparse.ArgumentParser:
        """A subcommand accepting ``--config``; ``run(settings, args)`` is its exit code.

        ``needs_settings=False`` commands get ``settings=None`` when no settings could be
        loaded (they still get them when a file is given or found).
        """
        # No abbreviations: `--older-than 3` must not silently mean `--older-than-days`, and a
        # new option must not change what an abbreviation in someone's script means.
        kwargs.setdefault("allow_abbrev", False)
        parser = self._action.add_parser(name, help=help, description=help, **kwargs)
        config_options(parser, top_level=False)
        if run is not None:
            parser.set_defaults(fn=run, needs_settings=needs_settings)
        return parser

    def group(self, parser: argparse.ArgumentParser, dest: str) -> Commands:
        """Nested subcommands (``outbox stats``, ``outbox list`` …)."""
        return Commands(parser.add_subparsers(dest=dest, required=True, metavar="ACTION"))


def print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "") or "").ljust(widths[c]) for c in columns))


def emit(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    else:
        print_table(rows, columns)


def public_base(settings: Settings) -> str:
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{settings.server.port}"


def webhook_url(settings: Settings, token: str) -> str:
    return public_base(settings) + WEBHOOK_PATH.format(token=token)


async def with_db(settings: Settings, fn: Callable[[Database], Awaitable[int]]) -> int:
    db = await Database.open(
        settings.storage.path, busy_timeout_ms=settings.storage.busy_timeout_ms
    )
    try:
        return await fn(db)
    finally:
        await db.close()
