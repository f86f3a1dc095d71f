"""The CLI's forms: ``--config/-c`` before and after every subcommand, ``--version``."""

from __future__ import annotations

import argparse
import sqlite3
from collections.abc import Iterator

import pytest

from bridge.cli import build_parser, main, package_version

# The smallest valid argument list of each (nested) subcommand, after its name.
REQUIRED = {
    ("outbox", "show"): ["1"],
    ("backfill",): ["--since", "2026-01-01"],
    ("send-sample",): ["call_end", "--url", "http://x/"],
}


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def leaf_commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    children = _subparsers(parser)
    if not children and path:
        yield path, parser
    for name, child in children.items():
        yield from leaf_commands(child, (*path, name))


COMMANDS = [path for path, _ in leaf_commands(build_parser())]


def test_every_command_is_enumerated():
    assert {("serve",), ("check",), ("outbox", "purge"), ("calls",), ("webhook-url",)} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
@pytest.mark.parametrize("flag", ["--config", "-c"])
def test_config_before_and_after_every_subcommand(path, flag):
    tail = REQUIRED.get(path, [])
    before = build_parser().parse_args([flag, "a.toml", *path, *tail])
    after = build_parser().parse_args([*path, *tail, flag, "b.toml"])
    middle = build_parser().parse_args([*path, flag, "c.toml", *tail])
    assert (before.config, after.config, middle.config) == ("a.toml", "b.toml", "c.toml")
    # Both given: the one after the subcommand (closest to it) wins.
    both = build_parser().parse_args(["-c", "a.toml", *path, *tail, "-c", "b.toml"])
    assert both.config == "b.toml"
    assert build_parser().parse_args([*path, *tail]).config is None


def test_serve_help_shows_config(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config FILE, -c FILE" in out and "--port" in out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"pbx-bridge {package_version()}" and package_version() != "unknown"


def test_config_after_subcommand_is_used(tmp_path, capsys):
    path = tmp_path / "s.toml"
    path.write_text(
        f'[storage]\npath = "{tmp_path / "b.db"}"\n[server]\npublic_url = '
        '"https://after.example.com"\n'
    )
    sqlite3.connect(tmp_path / "b.db").close()
    assert main(["webhook-url", "--config", str(path)]) == 0
    assert capsys.readouterr().out.startswith("https://after.example.com/webhooks/onlinepbx/")
