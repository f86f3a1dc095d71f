"""The adapters the reliability harness runs against, read from the adapters' manifests.

Every registered adapter whose ``Manifest`` names a ``fake`` (a loopback fake of its vendor)
and a ``fake_table`` (its ``[adapters.<name>]`` table pointed at that fake) is a target: adding
a CRM adds it to the fault table and the crash harness, nothing is listed here. The crash
harness also runs ``local`` (no remote side: its rows live in the bridge's own file).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bridge.registry import manifests
from tests.reliability.fakes import HTTP_SECRET, FakeCRM

__all__ = ["CRM", "HTTP_SECRET", "CRMTarget"]


@dataclass(frozen=True)
class CRMTarget:
    name: str  # the adapter's registry name (also used as the table name)
    table: Callable[[str], dict[str, Any]]  # base URL of the fake → [adapters.<name>] table
    fake: Callable[[Callable[[], float]], FakeCRM]  # the bridge's clock → an unstarted fake
    idempotent: bool  # the CRM drops a repeated write by its idempotency key
    secrets: tuple[str, ...] = ()  # every secret in ``table`` (grepped for in outputs)


def _targets() -> list[CRMTarget]:
    out = []
    for name, m in manifests().items():
        if name != m.name or m.fake is None or m.fake_table is None:
            continue  # an alias (kommo), or no fake
        table = m.load_fake_table()
        sample_table = table("http://127.0.0.1:9")
        out.append(
            CRMTarget(
                name,
                table,
                m.load_fake(),
                idempotent=m.deduplicates,
                secrets=tuple(str(sample_table[k]) for k in m.fake_secrets),
            )
        )
    return out


CRM: list[CRMTarget] = _targets()
