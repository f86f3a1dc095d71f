"""``pbx-bridge admin-password``: make the ``[admin] password_hash`` that turns the console on."""

from __future__ import annotations

import argparse
import getpass
import sys

from bridge.admin.auth import MIN_PASSWORD, hash_password
from bridge.cli.base import Commands


def cmd_admin_password(settings: None, args: argparse.Namespace) -> int:
    if args.stdin or not sys.stdin.isatty():
        # Piped input (`echo pw | pbx-bridge admin-password`) is read like --stdin: getpass
        # would take the first line and then die on EOF at "Again:". A second line, when
        # given, is the confirmation.
        password = sys.stdin.readline().rstrip("\r\n")
        again = sys.stdin.readline()
        if again and again.rstrip("\r\n") != password:
            print("the two passwords differ; nothing was made", file=sys.stderr)
            return 2
    else:
        try:
            password = getpass.getpass("Console password: ")
            if getpass.getpass("Again: ") != password:
                print("the two passwords differ; nothing was made", file=sys.stderr)
                return 2
        except (EOFError, KeyboardInterrupt):
            print("\nno password given; nothing was made", file=sys.stderr)
            return 2
    if len(password) < MIN_PASSWORD:
        print(f"the password must be at least {MIN_PASSWORD} characters", file=sys.stderr)
        return 2
    # Only the hash goes to stdout (safe to redirect into a file); the hint goes to stderr.
    print("Put this in the settings file (the console is then at /admin/):", file=sys.stderr)
    print(f'[admin]\npassword_hash = "{hash_password(password)}"')
    return 0


HELP = "make the [admin] password_hash that turns the /admin/ console on"


def register(commands: Commands) -> None:
    p = commands.add("admin-password", cmd_admin_password, help=HELP, needs_settings=False)
    p.add_argument("--stdin", action="store_true", help="read the password from standard input")
