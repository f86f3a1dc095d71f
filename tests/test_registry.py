"""The adapter registry: built-ins, third-party entry points, and the log line binding."""

from __future__ import annotations

import io
import json
import sys
from importlib.metadata import EntryPoint

import pytest

from bridge import logs, registry
from bridge.adapter import Adapter, CheckResult
from bridge.samples import sample
from bridge.settings import SettingsError
from bridge.testing import AdapterHarness


class PluginAdapter(Adapter):
    """A third-party adapter, as a plugin package would ship it."""

    async def log_call(self, log):
        return "plugin-1"

    async def create_task(self, task):
        return "plugin-task"

    async def check(self):
        return CheckResult(account="plugin")


def test_builtin_names_resolve_to_adapter_classes():
    names = set(registry.available())
    assert {"local", "http", "amocrm", "kommo", "bitrix24", "hubspot", "pipedrive"} <= names
    for name in names:
        assert issubclass(registry.adapter_class(name), Adapter)


def test_the_core_imports_no_adapter_package():
    # Built-ins are entry points like any plugin: nothing in bridge/ names an adapter package.
    import pathlib
    import re

    core = pathlib.Path(registry.__file__).resolve().parent
    offenders = [
        str(p.relative_to(core))
        for p in core.rglob("*.py")
        if re.search(r"^\s*(from|import) adapters\b", p.read_text(), re.M)
    ]
    assert offenders == []


def test_entry_point_plugin_is_configurable(monkeypatch, tmp_path):
    ep = EntryPoint("mycrm", f"{__name__}:PluginAdapter", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep] if group == ep.group else [])
    [configured] = registry.configured({"mine": {"type": "mycrm", "users": {"145": 9}}})
    assert configured.cls is PluginAdapter and configured.settings.users == {"145": "9"}


def test_a_plugin_cannot_shadow_a_builtin(monkeypatch):
    ep = EntryPoint("local", f"{__name__}:PluginAdapter", registry.ENTRY_POINT_GROUP)
    real = registry.entry_points
    for order in (lambda g: [ep, *real(group=g)], lambda g: [*real(group=g), ep]):
        monkeypatch.setattr(registry, "entry_points", lambda group, order=order: order(group))
        assert registry.adapter_class("local") is not PluginAdapter


def test_entry_point_that_is_not_an_adapter_is_a_settings_error(monkeypatch):
    ep = EntryPoint("bad", "json:loads", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    with pytest.raises(SettingsError, match="not an Adapter subclass"):
        registry.adapter_class("bad")


async def test_log_lines_are_bound_to_the_call_and_job(tmp_path, monkeypatch):
    ep = EntryPoint("mycrm", f"{__name__}:PluginAdapter", registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry, "entry_points", lambda group: [ep])
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    logs.configure("INFO", "json")
    harness = await AdapterHarness.open(tmp_path, "mine", {"type": "mycrm"})
    payload = sample("call_end")
    job = await harness.deliver(payload)
    await harness.close()
    assert job.status == "done" and job.result == "plugin-1"
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    delivered = next(line for line in lines if line["msg"] == "delivered")
    assert delivered["uuid"] == payload["uuid"] and delivered["event"] == "call_end"
    assert delivered["adapter"] == "mine" and delivered["job_id"] == job.id
