"""``pbx-bridge``: the command line. One module per command group, each with ``register``.

To add a subcommand, write ``bridge/cli/<name>.py`` with ``register(commands)`` (see
``bridge.cli.base.Commands``) and add the module's name to ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from bridge import logs
from bridge.cli.base import CommandError, Commands, config_options
from bridge.safetext import safe_output
from bridge.settings import CONFIG_ENV, SettingsError, load_settings

# In the order `pbx-bridge --help` lists them.
COMMAND_MODULES = (
    "serve",
    "check",
    "outbox",
    "local",
    "backfill",
    "send_sample",
    "init",
    "admin",
    "migrate",
)

DESCRIPTION = (
    "Puts every onlinePBX call into your CRM: webhooks in, durable outbox, CRM adapters out."
)


def package_version() -> str:
    try:
        return version("pbx-bridge")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbx-bridge", description=DESCRIPTION, allow_abbrev=False)
    config_options(parser, top_level=True)
    parser.add_argument("--version", action="version", version=f"pbx-bridge {package_version()}")
    commands = Commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # CRM answers and webhook values reach the terminal: no controls, no bidi tricks
    try:
        with safe_output():
            return _main(argv)
    except BrokenPipeError:
        # `pbx-bridge outbox list | head`: the reader left; no traceback for that. Point stdout
        # at devnull so the interpreter's final flush does not raise again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # what a shell reports for SIGPIPE (128 + 13)


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    mode = getattr(args, "settings_mode", "required")
    if mode == "none":
        return args.fn(None, args)
    try:
        if mode == "optional" and not (args.config or os.environ.get(CONFIG_ENV)):
            return args.fn(None, args)
        settings = load_settings(args.config)
        logs.configure(settings.log.level, settings.log.format)
        return args.fn(settings, args)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except CommandError as exc:
        print(str(exc), file=sys.stderr)
        return exc.code


if __name__ == "__main__":
    sys.exit(main())
