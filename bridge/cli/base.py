"""What every subcommand module shares: registration, output tables, the database, URLs.

A subcommand lives in its own module of ``bridge.cli`` with a ``register(commands)`` function;
``bridge.cli.COMMAND_MODULES`` lists the modules (see /work/coord/notes.md for the recipe).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from bridge.app import WEBHOOK_PATH
from bridge.settings import CONFIG_ENV, Settings
from bridge.store import Storage, StorageError, open_storage

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
        settings: Literal["required", "optional", "none"] = "required",
        needs_settings: bool = True,
        **kwargs: Any,
    ) -> argparse.ArgumentParser:
        """A subcommand accepting ``--config``; ``run(settings, args)`` is its exit code.

        ``settings``: "required" (loaded, or the command stops with the error), "optional"
        (``None`` when no file is given and none is found), "none" (never loaded: ``init``).
        ``needs_settings=False`` is the older spelling of "none".
        """
        if not needs_settings:
            settings = "none"
        # No abbreviations: `--older-than 3` must not silently mean `--older-than-days`, and a
        # new option must not change what an abbreviation in someone's script means.
        kwargs.setdefault("allow_abbrev", False)
        parser = self._action.add_parser(name, help=help, description=help, **kwargs)
        config_options(parser, top_level=False)
        if run is not None:
            parser.set_defaults(fn=run, settings_mode=settings)
        return parser

    def group(self, parser: argparse.ArgumentParser, dest: str) -> Commands:
        """Nested subcommands (``outbox stats``, ``outbox list`` …)."""
        return Commands(parser.add_subparsers(dest=dest, required=True, metavar="ACTION"))


SQLITE_MAX_INT = 2**63 - 1  # a larger id overflows SQLite's INTEGER instead of matching nothing
MAX_ROWS = 100_000


def _whole(text: str, what: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {what} must be a whole number") from None
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"{text}: {what} must be from {low} to {high}")
    return value


def row_id(text: str) -> int:
    """A job id argument: a number SQLite can hold."""
    return _whole(text, "an id", 1, SQLITE_MAX_INT)


def row_count(text: str) -> int:
    return _whole(text, "a row count", 1, MAX_ROWS)


def days_at_least_one(text: str) -> float:
    """``--older-than-days``: below one day would remove what was delivered minutes ago."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days, e.g. 30") from None
    if not 1 <= value <= 36_500:
        raise argparse.ArgumentTypeError(
            f"{text}: at least 1 day (recently delivered jobs are what proves a call was"
            " delivered; the hourly retention run keeps storage.retention_days)"
        )
    return value


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


class CommandError(Exception):
    """A mistake the command explains in plain words; ``main`` prints it and exits ``code``."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def _config_hint(settings: Settings) -> str:
    where = f"settings from {settings.source}" if settings.file else "no settings file"
    return (
        f"  ({where}; relative paths are taken from the current directory {Path.cwd()})\n"
        "  If the bridge runs with another settings file or from another directory, point at"
        " it:\n  --config /path/to/settings.toml (before or after the command), or"
        f" {CONFIG_ENV}=/path/to/settings.toml"
    )


def missing_database(settings: Settings) -> str | None:
    """Why a read-only command must not open ``storage.path`` (it does not exist), or None."""
    if settings.storage.url is not None:  # PostgreSQL: the server says what is missing
        return None
    path = Path(settings.storage.path)
    if path.exists():
        return None
    return (
        f"no database at {path.absolute()} (storage.path = {str(path)!r}); nothing was"
        " created.\n" + _config_hint(settings) + "\n  `pbx-bridge serve` creates the database"
        " on its first start."
    )


def database_problem(settings: Settings, exc: BaseException) -> str:
    """An unusable ``storage.path`` in words, naming the key and the file."""
    path = Path(settings.storage.path).absolute()
    text = str(exc).lower()
    if isinstance(exc, IsADirectoryError) or path.is_dir():
        why = "is a directory, not a database file"
    elif isinstance(exc, PermissionError) or "readonly" in text or "read-only" in text:
        why = (
            f"cannot be written by this user (uid {os.getuid()}): run the command as the"
            " bridge's user, or fix the file's and its directory's owner"
        )
    elif "not a database" in text or "malformed" in text or "file is encrypted" in text:
        why = "is not an SQLite database (or is damaged); point storage.path at the bridge's one"
    else:
        why = f"cannot be opened: {exc}"
    return f"storage.path: {path} {why}"


_DB_ERRORS = (sqlite3.Error, OSError)


async def open_database(settings: Settings, *, create: bool) -> Storage:
    """The bridge's storage (SQLite or PostgreSQL, migrated); ``create=False`` (read-only
    commands) never makes a new SQLite file."""
    if not create:
        problem = missing_database(settings)
        if problem:
            raise CommandError(problem)
    try:
        return await open_storage(settings.storage)
    except StorageError as exc:
        cause = exc.__cause__
        if settings.storage.url is None and isinstance(cause, _DB_ERRORS):
            raise CommandError(database_problem(settings, cause), 2) from exc
        # An unreachable server, a schema from a newer release: already in words.
        key = "storage.url" if settings.storage.url is not None else "storage"
        raise CommandError(f"{key}: {exc}", 2) from exc


async def with_db(
    settings: Settings, fn: Callable[[Storage], Awaitable[int]], *, create: bool = False
) -> int:
    """Run ``fn`` on the database. Read-only by default: a missing file is an error that
    says which file was looked for, never a new empty database."""
    db = await open_database(settings, create=create)
    try:
        return await fn(db)
    finally:
        await db.close()
