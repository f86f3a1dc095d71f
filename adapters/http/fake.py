"""A receiver of the ``http`` adapter's documents on loopback, for the contract suite and the
reliability harness. ``webhook-id`` is the idempotency key a receiver deduplicates by."""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

from bridge.fakecrm import FakeCRM, Recorded

SECRET = "whsec_" + base64.b64encode(b"reliability-signing-key-0123456789").decode()


class HttpReceiver(FakeCRM):
    """Accepts every POST; a document's call key is its call and its ``type``."""

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or not seen.body:
            return None
        doc = json.loads(seen.body)
        return f"{doc['call']['domain']}/{doc['call']['uuid']}/{doc['type']}"

    def idempotency_keys(self) -> Counter[str]:
        return Counter(s.headers.get("webhook-id", "") for s in self.requests if s.body)


def reliability_table(base_url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": f"{base_url}/hook",
        "secret": SECRET,
        "rate_limit": 0,
        "concurrency": 4,
    }
