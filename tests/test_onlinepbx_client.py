"""The onlinePBX API client against the fake API: login, stored keys, errors, windows."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bridge.onlinepbx.client import ApiError, NotAuthorized, OnlinePBX
from bridge.redact import Redactor
from bridge.settings import OnlinePBXSettings, Settings
from bridge.store.sqlite import SQLiteStorage
from tests.fakes.onlinepbx import call_record


@pytest.fixture
async def db(tmp_path):
    database = await SQLiteStorage.open(tmp_path / "bridge.db")
    yield database
    await database.close()


def client(settings: Settings, db: SQLiteStorage, redactor: Redactor | None = None) -> OnlinePBX:
    return OnlinePBX(settings.onlinepbx, db, redactor=Redactor() if redactor is None else redactor)


async def test_logs_in_once_and_keeps_the_key_for_the_next_process(pbx, pbx_settings, db):
    pbx.calls.append(call_record("u1", 1_780_000_000))
    api = client(pbx_settings(), db)
    assert [r["uuid"] for r in await api.history(1_779_999_000, 1_780_001_000)] == ["u1"]
    await api.history(1_779_999_000, 1_780_001_000)
    await api.aclose()
    again = client(pbx_settings(), db)  # a restart, or the CLI: the stored key is reused
    await again.history(1_779_999_000, 1_780_001_000)
    await again.aclose()
    assert pbx.logins == 1
    stored = await db.meta(f"onlinepbx_auth:{pbx.domain}")
    assert stored in pbx.keys


async def test_is_not_auth_logs_in_again_and_retries_once(pbx, pbx_settings, db):
    pbx.calls.append(call_record("u1", 1_780_000_000))
    api = client(pbx_settings(), db)
    await api.history(1_779_999_000, 1_780_001_000)
    pbx.expire_keys()
    records = await api.history(1_779_999_000, 1_780_001_000)
    await api.aclose()
    assert [r["uuid"] for r in records] == ["u1"]
    assert pbx.logins == 2
    assert len(pbx.searches()) == 3  # the refused one, then its single retry


async def test_status_zero_becomes_a_clear_error(pbx, pbx_settings, db):
    api = client(pbx_settings(), db)
    with pytest.raises(ApiError, match="Period must not exceed 7 days"):
        await api.call(
            "mongo_history/search.json", {"start_stamp_from": 0, "start_stamp_to": 9_000_000}
        )
    await api.aclose()


async def test_a_refused_api_key_names_the_setting_and_never_the_key(pbx, pbx_settings, db):
    redactor = Redactor()
    api = client(pbx_settings(onlinepbx={"api_key": "wrong-key-abcdef"}), db, redactor)
    with pytest.raises(NotAuthorized) as caught:
        await api.history(0, 10)
    await api.aclose()
    message = str(caught.value)
    assert "Auth key not found" in message and "[onlinepbx] api_key" in message
    assert "wrong-key-abcdef" not in message
    assert redactor("x wrong-key-abcdef y") == "x *** y"


async def test_session_keys_are_registered_as_secrets(pbx, pbx_settings, db):
    redactor = Redactor()
    api = client(pbx_settings(), db, redactor)
    await api.history(0, 10)
    await api.aclose()
    (key,) = pbx.keys
    assert key not in redactor(f"header {key}")


async def test_http_failures_become_api_errors(pbx, pbx_settings, db):
    pbx.fail_history_at = 1
    api = client(pbx_settings(), db)
    with pytest.raises(ApiError, match="HTTP 500"):
        await api.history(0, 10)
    await api.aclose()


async def test_history_windows_over_seven_days_are_refused_before_asking(pbx_settings, db):
    api = client(pbx_settings(), db)
    with pytest.raises(ValueError, match="7 days"):
        await api.history(0, 7 * 86_400 + 1)
    await api.aclose()


def test_settings_normalise_the_domain_and_cap_the_rate():
    pbx = OnlinePBXSettings(domain=" https://Example.ONPBX.ru/ ", api_key="k" * 16)
    assert pbx.domain == "example.onpbx.ru" and pbx.enabled
    assert pbx.base_url == "https://api2.onlinepbx.ru"
    assert not OnlinePBXSettings().enabled
    with pytest.raises(ValidationError):
        OnlinePBXSettings(rate_limit=6)
