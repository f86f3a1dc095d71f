"""The pytest plugin third-party adapter authors get with pbx-bridge (loaded by entry point)."""

from __future__ import annotations


async def test_the_plugin_fixtures_run_an_adapter(pbx_harness, pbx_clock, pbx_sample):
    h = await pbx_harness("local", {})
    job = await h.deliver(pbx_sample("call_end", uuid="plugin-1", now=pbx_clock()))
    assert job.status == "done" and job.result.startswith("call:")
    pbx_clock.advance(60)
    other = await pbx_harness("local", {})  # a second one gets its own database
    assert await other.db.db.fetchall("SELECT id FROM local_calls") == []


def test_the_plugin_is_registered_as_an_entry_point():
    from importlib.metadata import entry_points

    assert any(ep.value == "bridge.pytest_plugin" for ep in entry_points(group="pytest11"))


async def test_a_refused_table_does_not_block_the_next_harness(pbx_harness):
    import pytest

    from bridge.settings import SettingsError

    with pytest.raises(SettingsError):
        await pbx_harness("local", {"create_contacts": "sometimes"})
    h = await pbx_harness("local", {})  # a test may try several tables in a row
    assert h.name == "local"


async def test_a_harness_that_fails_to_open_leaves_no_database_open(tmp_path, monkeypatch):
    # A refused table (or an adapter's failed setup) once left the harness's database open:
    # nobody had a harness to close, and the aiosqlite thread outlived the test's event loop
    # ("Event loop is closed", a PytestUnhandledThreadExceptionWarning in a later test).
    import pytest

    import bridge.testing
    from adapters.local.adapter import LocalAdapter
    from bridge.settings import SettingsError

    opened = []
    real_open = bridge.testing.open_storage

    async def open_storage(settings):
        opened.append(await real_open(settings))
        return opened[-1]

    async def still_open(storage) -> bool:
        try:
            await storage.meta("schema_version")
        except ValueError:  # aiosqlite: "Connection closed"
            return False
        return True

    async def refuse(self):
        raise RuntimeError("the CRM said no")

    monkeypatch.setattr(bridge.testing, "open_storage", open_storage)
    with pytest.raises(SettingsError):
        await bridge.testing.AdapterHarness.open(tmp_path, "local", {"create_contacts": "x"})
    monkeypatch.setattr(LocalAdapter, "setup", refuse)
    with pytest.raises(RuntimeError, match="the CRM said no"):
        await bridge.testing.AdapterHarness.open(tmp_path, "local", {})
    assert opened and [await still_open(db) for db in opened] == [False] * len(opened)
