"""``pbx-bridge init``: a commented settings.toml, 0600, never overwritten, asks on a terminal."""

from __future__ import annotations

import io
import stat
import tomllib

import pytest

from bridge.cli import main
from bridge.registry import configured
from bridge.settings import load_settings
from tests.test_docs_commands import commands_in, parses, snippets, variants


def test_init_with_flags_writes_a_valid_commented_file(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    argv = [
        "init",
        "--crm",
        "amocrm",
        "--set",
        "base_url=https://example.amocrm.ru",
        "--set",
        "access_token=eyJ0eXAiOiJKV1Qi",
        "--set",
        'users={"101": 5550001}',
        "--set",
        "default_user=5550001",
        "--public-url",
        "https://pbx.example.com",
        "--onlinepbx-domain",
        "https://Example.onpbx.ru/",
        "--no-input",
    ]
    assert main(argv) == 0
    path = tmp_path / "settings.toml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "# rate_limit = 6.0" in text and "# client_id" in text  # the CRM's keys, commented
    assert "the settings are valid" in capsys.readouterr().out
    settings = load_settings(path)
    assert settings.storage.path == tmp_path / "pbx-bridge.db"  # absolute: any directory works
    assert settings.server.public_url == "https://pbx.example.com"
    assert settings.onlinepbx.domain == "example.onpbx.ru"
    [amo] = configured(settings.adapters)
    assert amo.name == "amocrm" and amo.settings.users == {"101": "5550001"}
    # The commands the file shows parse (read as the docs test reads settings.toml.example).
    toml_example = tmp_path / "init.toml.example"
    toml_example.write_text(text)
    found = [a for _, code in snippets(toml_example) for a in commands_in(code)]
    assert len(found) >= 2
    for argv in found:
        for variant in variants(" ".join(argv)):
            parses(variant)


def test_init_refuses_to_overwrite(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text("[server]\nport = 9000\n")
    assert main(["init", "--config", str(path), "--no-input"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert path.read_text() == "[server]\nport = 9000\n"


def test_init_names_what_is_still_missing(tmp_path, capsys):
    path = tmp_path / "s.toml"
    assert main(["init", "-c", str(path), "--crm", "amocrm", "--no-input"]) == 0
    err = capsys.readouterr().err
    assert "still to fill in" in err and "adapters.amocrm.base_url" in err
    assert "# base_url = …   # REQUIRED" in path.read_text()


def test_init_rejects_unknown_keys_and_crms(tmp_path, capsys):
    path = tmp_path / "s.toml"
    assert main(["init", "-c", str(path), "--crm", "amocrm", "--set", "baseurl=x"]) == 2
    assert "not a key of [adapters.amocrm]" in capsys.readouterr().err
    assert main(["init", "-c", str(path), "--crm", "nosuchcrm", "--no-input"]) == 2
    assert "unknown adapter type 'nosuchcrm'" in capsys.readouterr().err
    assert not path.exists()


def test_init_asks_on_a_terminal(tmp_path, monkeypatch, capsys):
    answers = iter(["nope", "http", "", "", ""])

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    # the http adapter's url is a secret (a catch-hook URL is its own key): asked unechoed
    secrets = iter(["https://crm.internal/pbx", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(secrets))
    path = tmp_path / "s.toml"
    assert main(["init", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert "unknown adapter 'nope'" in out
    table = tomllib.loads(path.read_text())["adapters"]["http"]
    assert table == {
        "url": "https://crm.internal/pbx",
        "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    }
    [hook] = configured(load_settings(path).adapters)
    assert hook.name == "http"


def test_settings_toml_is_ignored_by_git():
    from pathlib import Path

    lines = (Path(__file__).resolve().parents[1] / ".gitignore").read_text().splitlines()
    assert "settings.toml" in lines


@pytest.fixture(autouse=True)
def _no_config_env(monkeypatch):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
