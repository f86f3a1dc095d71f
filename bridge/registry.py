"""Adapter names → classes, and building the configured adapters from settings."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from adapters import BUILTIN
from bridge.adapter.contract import Adapter, AdapterSettings
from bridge.settings import SettingsError, format_validation_error

ENTRY_POINT_GROUP = "pbx_bridge.adapters"
DEFAULT_ADAPTER = "local"


def available() -> dict[str, str]:
    """Every adapter name that can be configured, with where it comes from."""
    found = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return {**found, **BUILTIN}


def adapter_class(name: str) -> type[Adapter]:
    target = available().get(name)
    if target is None:
        known = ", ".join(sorted(available()))
        raise SettingsError(f"unknown adapter type {name!r}; known: {known}")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise SettingsError(f"adapter {name!r} ({target}) is not an Adapter subclass")
    return cls


@dataclass(frozen=True, slots=True)
class ConfiguredAdapter:
    name: str  # the table name: [adapters.<name>]
    cls: type[Adapter]
    settings: AdapterSettings


def configured(
    tables: dict[str, dict[str, Any]], source: str = "settings"
) -> list[ConfiguredAdapter]:
    """Validate every ``[adapters.*]`` table; the active ones, ``local`` when none is given."""
    if not tables:
        tables = {DEFAULT_ADAPTER: {}}
    out = []
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise SettingsError(
                f"invalid settings in {source}:\n  adapters.{name}: must be a table"
            )
        cls = adapter_class(str(table.get("type") or name))
        try:
            settings = cls.Settings(**table)
        except ValidationError as exc:
            raise SettingsError(
                format_validation_error(exc, source, f"adapters.{name}.", cls.Settings)
            ) from exc
        if settings.enabled:
            out.append(ConfiguredAdapter(name, cls, settings))
    return out
