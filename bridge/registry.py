"""Adapter names → classes, and building the configured adapters from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from pydantic import ValidationError

from bridge.adapter.contract import Adapter, AdapterSettings
from bridge.adapter.manifest import Manifest
from bridge.settings import SettingsError, format_validation_error

ENTRY_POINT_GROUP = "pbx_bridge.adapters"
DEFAULT_ADAPTER = "local"
#: The distribution whose entry points are the built-ins (a plugin cannot shadow those).
BUILTIN_DISTRIBUTION = "pbx-bridge"


def _builtin(ep: EntryPoint) -> bool:
    dist = getattr(ep, "dist", None)
    name = getattr(dist, "name", None) or (dist.metadata["Name"] if dist else None)
    return name is not None and name.replace("_", "-").lower() == BUILTIN_DISTRIBUTION


def available() -> dict[str, EntryPoint]:
    """Every adapter name that can be configured, with its entry point. Built-ins (this
    distribution's own entry points) win over a plugin claiming the same name."""
    found = list(entry_points(group=ENTRY_POINT_GROUP))
    out = {ep.name: ep for ep in found if not _builtin(ep)}
    out.update({ep.name: ep for ep in found if _builtin(ep)})
    return out


@cache
def _resolve(name: str, value: str) -> Manifest:
    ep = EntryPoint(name, value, ENTRY_POINT_GROUP)
    try:
        obj = ep.load()
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"adapter {name!r} ({value}) cannot be loaded: {exc}") from exc
    if isinstance(obj, Manifest):
        return obj
    if isinstance(obj, type) and issubclass(obj, Adapter):
        return Manifest.of(name, obj)
    raise SettingsError(f"adapter {name!r} ({value}) is not an Adapter subclass or a Manifest")


def manifest(name: str) -> Manifest:
    ep = available().get(name)
    if ep is None:
        known = ", ".join(sorted(available())) or "none (is pbx-bridge installed? pip install -e .)"
        raise SettingsError(f"unknown adapter type {name!r}; known: {known}")
    return _resolve(ep.name, ep.value)


def manifests() -> dict[str, Manifest]:
    """Every registered adapter's manifest by registry name (aliases included)."""
    return {name: manifest(name) for name in sorted(available())}


def adapter_class(name: str) -> type[Adapter]:
    found = manifest(name)
    try:
        cls = found.load()
    except (ImportError, AttributeError) as exc:
        raise SettingsError(f"adapter {name!r} ({found.adapter}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Adapter)):
        raise SettingsError(f"adapter {name!r} ({found.adapter}) is not an Adapter subclass")
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
