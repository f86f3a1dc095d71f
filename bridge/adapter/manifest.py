"""An adapter package's manifest: what the registry, the docs and the test suites know of it.

Each ``adapters/<crm>/__init__.py`` holds one ``MANIFEST``; ``pyproject.toml`` registers it under
the ``pbx_bridge.adapters`` entry-point group (built-ins exactly like third-party adapters), so
the core imports no adapter package by name. Reading a manifest imports only that small
``__init__``; the adapter class itself is imported when it is configured.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.adapter.contract import Adapter


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj


@dataclass(frozen=True)
class Manifest:
    name: str  # the registry name, ``[adapters.<name>]`` / ``type = "<name>"``
    adapter: str  # "package.module:Class"
    title: str = ""  # the CRM's name for people ("amoCRM / Kommo")
    summary: str = ""  # one line for the README's adapter table
    aliases: tuple[str, ...] = ()  # other registry names of the same adapter ("kommo")
    #: The CRM's own idempotency key, closing the crash window between "the CRM created it"
    #: and "the bridge recorded its id" (None: the CRM has none; see the docs page).
    idempotency_key: str | None = None
    #: The CRM is known (documented and faked) to drop a repeated write by that key; the
    #: reliability harness then demands zero duplicates even across a crash.
    deduplicates: bool = False
    #: ``check`` lists the CRM's users (a CRM has users; a generic receiver has none).
    lists_users: bool = True
    capabilities: frozenset[str] = field(default_factory=frozenset)  # checked against the class
    docs: str = ""  # the docs page, relative to the repository root
    #: "module:factory" of a loopback fake of the vendor (``factory(clock) -> FakeCRM``), and
    #: of the function giving an ``[adapters.<name>]`` table pointed at it (``table(url)``).
    fake: str | None = None
    fake_table: str | None = None
    #: Settings keys holding secrets in ``fake_table``'s table (grepped for in outputs).
    fake_secrets: tuple[str, ...] = ()

    def load(self) -> type[Adapter]:
        return _load(self.adapter)

    def load_fake(self) -> Any:
        return _load(self.fake) if self.fake else None

    def load_fake_table(self) -> Any:
        return _load(self.fake_table) if self.fake_table else None

    @classmethod
    def of(cls, name: str, adapter: type[Adapter]) -> Manifest:
        """The manifest of a third-party adapter registered as a bare class."""
        from bridge.adapter.contract import capabilities

        return cls(
            name=name,
            adapter=f"{adapter.__module__}:{adapter.__qualname__}",
            title=name,
            capabilities=capabilities(adapter),
        )
