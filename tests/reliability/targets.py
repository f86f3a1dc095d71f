"""The adapters the reliability harness runs against: adding a CRM is one entry in ``CRM``.

Each entry pairs the adapter's settings table (pointed at a loopback fake) with the factory
of that fake. The fault table and the crash harness both iterate over ``CRM``; the crash
harness also runs ``local`` (no remote side: its rows live in the bridge's own file).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.reliability.fakes import FakeCRM, HttpReceiver

HTTP_SECRET = "whsec_" + base64.b64encode(b"reliability-signing-key-0123456789").decode()


@dataclass(frozen=True)
class CRMTarget:
    name: str  # the adapter's registry name (also used as the table name)
    table: Callable[[str], dict[str, Any]]  # base URL of the fake → [adapters.<name>] table
    fake: Callable[[Callable[[], float]], FakeCRM]  # the bridge's clock → an unstarted fake
    idempotent: bool  # the CRM drops a repeated write by its idempotency key
    secrets: tuple[str, ...] = ()  # every secret in ``table`` (grepped for in outputs)


def _http_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": f"{base_url}/hook",
        "secret": HTTP_SECRET,
        "rate_limit": 0,
        "concurrency": 4,
    }


CRM: list[CRMTarget] = [
    CRMTarget(
        "http",
        _http_table,
        lambda clock: HttpReceiver(clock),
        idempotent=True,  # webhook-id is stable per call and kind
        secrets=(HTTP_SECRET,),
    ),
    # The lead adds amocrm, bitrix24, hubspot, pipedrive here after merging, e.g.:
    # CRMTarget("amocrm", _amocrm_table, lambda clock: FakeAmo(clock), idempotent=False, ...)
]
