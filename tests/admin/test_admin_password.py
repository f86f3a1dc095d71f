"""``pbx-bridge admin-password``: the hash it prints turns the console on and opens it."""

from __future__ import annotations

import io
import re

from bridge.admin.auth import verify_hash
from bridge.cli import main
from tests.admin.conftest import log_in


async def test_the_printed_hash_logs_in(monkeypatch, capsys, make_settings, start_bridge):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    assert main(["admin-password", "--stdin"]) == 0
    out = capsys.readouterr().out
    found = re.fullmatch(r'\[admin\]\npassword_hash = "(scrypt\$[^"]+)"\n', out)
    assert found, out
    stored = found.group(1)
    assert verify_hash("a long enough secret", stored)
    assert not verify_hash("a long enough secreT", stored)
    assert "a long enough secret" not in out
    client = await start_bridge(make_settings(admin={"password_hash": stored}))
    await log_in(client, "a long enough secret")


def test_short_password_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["admin-password", "--stdin"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err


def test_a_piped_password_without_stdin_flag_is_read(monkeypatch, capsys):
    # `echo pw | pbx-bridge admin-password`: getpass would read the first line, then die
    # with a traceback (EOFError) at "Again:".
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\n"))
    assert main(["admin-password"]) == 0
    stored = re.search(r'password_hash = "([^"]+)"', capsys.readouterr().out).group(1)
    assert verify_hash("a long enough secret", stored)


def test_a_piped_confirmation_that_differs_is_refused(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough secret\nsomething else!\n"))
    assert main(["admin-password"]) == 2
    assert "differ" in capsys.readouterr().err
