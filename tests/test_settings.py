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
        ({"hook": {"type": "http", "secret": "x"}}, "adapters.hook.url: required, but not set"),
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


# --- #11: environment JSON, refusals at load, plain words, unusable files -------------------


def test_adapter_keys_take_json_lists_and_tables_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("PBX_BRIDGE_ADAPTERS__LOCAL__EVENTS", '["log_call"]')
    monkeypatch.setenv("PBX_BRIDGE_ADAPTERS__LOCAL__USERS", '{"101": 5}')
    [local] = configured(load_settings().adapters)
    assert local.settings.events == ["log_call"]
    assert local.settings.users == {"101": "5"}


def test_bad_json_in_the_environment_names_the_variable(monkeypatch):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("PBX_BRIDGE_ADAPTERS__LOCAL__USERS", '{"101": 5')
    monkeypatch.setenv("PBX_BRIDGE_ADAPTERS__LOCAL__EVENTS", '["log_call",]')
    with pytest.raises(SettingsError, match="PBX_BRIDGE_ADAPTERS__LOCAL__EVENTS: not valid JSON"):
        load_settings()
    monkeypatch.delenv("PBX_BRIDGE_ADAPTERS__LOCAL__EVENTS")
    monkeypatch.delenv("PBX_BRIDGE_ADAPTERS__LOCAL__USERS")
    monkeypatch.setenv("PBX_BRIDGE_SERVER__ALLOWED_IPS", "10.0.0.0/8")  # a list needs JSON
    with pytest.raises(SettingsError, match="PBX_BRIDGE_SERVER__ALLOWED_IPS"):
        load_settings()


def test_an_env_value_of_the_wrong_type_names_the_variable(monkeypatch):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv("PBX_BRIDGE_SERVER__PORT", "eighty")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "server.port (from $PBX_BRIDGE_SERVER__PORT): must be a whole number" in str(err.value)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("PBX_BRIDGE_CONFG", "did you mean PBX_BRIDGE_CONFIG"),
        ("PBX_BRIDGE_CONFIG_FILE", "did you mean PBX_BRIDGE_CONFIG"),
        ("PBX_BRIDGE_SERVR__PORT", r"no \[servr\] table; did you mean PBX_BRIDGE_SERVER__"),
    ],
)
def test_misspelled_variables_are_errors(monkeypatch, tmp_path, name, message):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    monkeypatch.setenv(name, str(tmp_path / "settings.toml"))
    with pytest.raises(SettingsError, match=message):
        load_settings()


def test_config_variable_pointing_nowhere_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PBX_BRIDGE_CONFIG", str(tmp_path / "setings.toml"))
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "not found" in str(err.value) and "$PBX_BRIDGE_CONFIG" in str(err.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "unknown key `prot` in [server]; did you mean `port`?"),
        ("[servr]\nport = 1\n", "unknown table [servr]; did you mean `server`?"),
        (
            '[adapters.amocrm]\nbase_url = "https://x.amocrm.ru"\naccess_tokn = "t"\n',
            "adapters.amocrm.access_tokn: unknown key `access_tokn` in [adapters.amocrm];"
            " did you mean `access_token`?",
        ),
        (
            "[server]\nwebhook_token = 'abc/def?ghi#jkl%mno'\n",
            "server.webhook_token: may hold only letters, digits",
        ),
        (
            "[server]\nwebhook_token = 'change-me-to-a-long-random-string'\n",
            "server.webhook_token: is the example's placeholder",
        ),
        ("[server]\npublic_url = 'http://pbx.example.com'\n", "server.public_url: must start"),
        ("[server]\nmetrics_token = 'short'\n", "server.metrics_token"),
        (
            "[schedule]\nwork_start = 18:00:00\nwork_end = 09:00:00\n",
            "schedule.work_end: must be after work_start (18:00)",
        ),
        (
            '[adapters.hook]\ntype = "http"\nurl = "https://x"\nsecret = "whsec_not base64!"\n',
            "adapters.hook.secret: a whsec_ secret is whsec_ followed by base64",
        ),
        ("[adapters.local]\nevents = 'log_call'\n", "adapters.local.events: must be a list"),
    ],
)
def test_refused_at_load_naming_key_and_file(tmp_path, monkeypatch, text, message):
    monkeypatch.delenv("PBX_BRIDGE_CONFIG", raising=False)
    path = write(tmp_path, text)
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert message in str(err.value), str(err.value)
    assert str(path) in str(err.value)
    assert "Extra inputs" not in str(err.value) and "Input should" not in str(err.value)
    assert "not base64" not in str(err.value)  # the secret is not echoed


def test_allowed_domains_are_normalised_like_the_onlinepbx_domain(tmp_path):
    s = load_settings(
        write(tmp_path, '[server]\nallowed_domains = ["https://Example.onpbx.ru/", "b.onpbx.ru"]\n')
    )
    assert s.server.allowed_domains == ["example.onpbx.ru", "b.onpbx.ru"]


def test_a_valid_whsec_secret_and_https_public_url_load(tmp_path):
    s = load_settings(
        write(
            tmp_path,
            '[server]\npublic_url = "https://pbx.example.com/"\n'
            'webhook_token = "Abc-def_ghi.jkl~0123"\n'
            '[adapters.hook]\ntype = "http"\nurl = "https://x"\n'
            'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n',
        )
    )
    assert s.server.public_url == "https://pbx.example.com"


@pytest.mark.parametrize("kind", ["directory", "not utf-8", "unreadable"])
def test_unusable_settings_files_are_clear_errors(tmp_path, kind):
    path = tmp_path / "settings.toml"
    if kind == "directory":
        path.mkdir()
        expected = "is a directory"
    elif kind == "not utf-8":
        path.write_bytes(b'[server]\nhost = "0.0.0.0"\n# \xcf\xf0\xe8\xe2\xe5\xf2\n')
        expected = "not UTF-8 text (line 3)"
    else:
        import os

        if os.geteuid() == 0:
            pytest.skip("root reads any file")
        path.write_text("[server]\n")
        path.chmod(0)
        expected = "permission denied"
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    assert expected in str(err.value) and str(path) in str(err.value)


def test_unreadable_file_as_root_still_clear(tmp_path, monkeypatch):
    """Root reads a mode-0 file, so the permission case is forced with the OS error itself."""
    path = write(tmp_path, "[server]\n")

    def denied(self):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(type(path), "read_bytes", denied)
    with pytest.raises(SettingsError, match="permission denied"):
        load_settings(path)


def test_a_bom_is_harmless(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_bytes("\ufeff[server]\nport = 9000\n".encode())
    assert load_settings(path).server.port == 9000
