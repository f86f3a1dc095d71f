"""Settings: TOML file, environment overrides, and errors that name the key and the file."""

from __future__ import annotations

import pytest

from bridge.app import create_app
from bridge.registry import configured
from bridge.settings import SettingsError, load_settings

EXAMPLE = """
[server]
port = 9090
webhook_token = "a-long-enough-token-123"
allowed_ips = ["10.0.0.0/8"]

[storage]
path = "x.db"

[adapters.hook]
type = "http"
url = "https://crm.example/hook"
secret = "s3cret-value"
users = { "101" = 42, "102" = "u-7" }
default_user = 1
"""


def write(tmp_path, text):
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return path


def test_no_file_gives_embedded_defaults(monkeypatch):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    s = load_settings()
    assert s.server.port == 8080 and str(s.storage.path) == "pbx-bridge.db"
    [only] = configured(s.adapters)
    assert only.name == "local"


def test_file_and_user_ids_as_numbers_or_strings(tmp_path):
    s = load_settings(write(tmp_path, EXAMPLE))
    assert s.server.port == 9090
    [hook] = configured(s.adapters)
    assert hook.settings.users == {"101": "42", "102": "u-7"}
    assert hook.settings.default_user == "1"


def test_environment_overrides_file_nested_with_double_underscore(tmp_path, monkeypatch):
    monkeypatch.setenv("PBX_BRIDGE_SERVER__PORT", "7000")
    monkeypatch.setenv("PBX_BRIDGE_ADAPTERS__HOOK__URL", "https://other.example/h")
    s = load_settings(write(tmp_path, EXAMPLE))
    assert s.server.port == 7000
    [hook] = configured(s.adapters)
    assert hook.settings.url.get_secret_value() == "https://other.example/h"
    assert hook.settings.secret.get_secret_value() == "s3cret-value"  # rest of the table kept


def test_config_path_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PBX_BRIDGE_CONFIG", str(write(tmp_path, EXAMPLE)))
    assert load_settings().server.port == 9090


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nport = 'abc'\n", "server.port"),
        ("[server]\nprot = 1\n", "server.prot"),
        ("[server]\nwebhook_token = 'short'\n", "server.webhook_token"),
        ("[schedule]\ntimezone = 'Mars/Base'\n", "schedule.timezone"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_errors_name_key_and_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert message in str(err.value) and str(path) in str(err.value)
    assert "short" not in str(err.value)  # secrets are not echoed back


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"hook": {"type": "http", "secret": "x"}}, "adapters.hook.url: Field required"),
        (
            {"hook": {"type": "http", "url": "u", "secret": "x", "create_contacts": "sometimes"}},
            "adapters.hook.create_contacts",
        ),
        ({"x": {"type": "nosuchcrm"}}, "unknown adapter type 'nosuchcrm'"),
        ({"local": {"events": ["log_call", "dance"]}}, "adapters.local.events"),
    ],
)
def test_adapter_tables_are_validated_by_their_model(table, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        configured(table)


def test_disabled_adapter_is_not_active():
    assert configured({"local": {"enabled": False}}) == []


def test_bad_template_is_a_settings_error(make_settings):
    with pytest.raises(SettingsError, match=r"schedule\.templates\.task_title"):
        create_app(make_settings(schedule={"templates": {"task_title": "{boom}"}}))


def test_missing_file_is_clear(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_secret_field_value_is_not_echoed():
    from pydantic import SecretStr

    from bridge.adapter import AdapterSettings
    from bridge.settings import format_validation_error

    class WithUrl(AdapterSettings):
        hook_address: SecretStr  # a secret whose name says nothing about it
        limit: int = 1

    from pydantic import ValidationError

    with pytest.raises(ValidationError) as err:
        WithUrl(hook_address=["https://portal/rest/1/c0de/"], limit="x")
    text = format_validation_error(err.value, "f.toml", "adapters.b.", WithUrl)
    assert "adapters.b.hook_address" in text and "c0de" not in text
    assert "(got 'x')" in text  # ordinary values are still shown
