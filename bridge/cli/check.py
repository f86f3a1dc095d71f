"""``pbx-bridge check``: validate the settings and try every adapter's credentials."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from bridge.cli.base import Commands, with_db
from bridge.deliver.service import build_adapter
from bridge.metrics import Metrics
from bridge.onlinepbx import commands as onlinepbx
from bridge.redact import REDACTOR, redact_tree
from bridge.registry import configured
from bridge.settings import Settings
from bridge.store.db import Database


def _masked(settings: Settings) -> dict[str, Any]:
    return redact_tree(json.loads(settings.model_dump_json()))


def _masked_model(model: Any) -> dict[str, Any]:
    data = json.loads(model.model_dump_json())
    return {k: REDACTOR(v) if isinstance(v, str) else v for k, v in data.items()}


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    adapters = configured(settings.adapters)
    for item in adapters:
        REDACTOR.add(*item.settings.secrets())
    dumped = _masked(settings)
    dumped["adapters"] = {a.name: _masked_model(a.settings) for a in adapters}
    print("Settings are valid:")
    print(json.dumps(dumped, ensure_ascii=False, indent=2, default=str))

    async def run(db: Database) -> int:
        failures = 0
        for item in adapters:
            adapter = build_adapter(item, settings, db, Metrics())
            try:
                await adapter.setup()
                result = await adapter.check()
            except Exception as exc:
                failures += 1
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                print(f"[FAIL] {item.name}: {REDACTOR(str(reason))}")
                continue
            finally:
                await adapter.aclose()
            print(f"[ OK ] {item.name}: {REDACTOR(result.account)}")
            for note in result.notes:
                print(f"       {REDACTOR(note)}")
            if result.users:
                print("       users (id: name) for the `users` map:")
                for uid, name in result.users:
                    print(f"         {uid}: {name}")
        failures += await onlinepbx.check(settings, db)
        return 1 if failures else 0

    return asyncio.run(with_db(settings, run))


def register(commands: Commands) -> None:
    commands.add("check", cmd_check, help="validate settings and try every adapter's credentials")
