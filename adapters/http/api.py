"""The receiving end: Standard Webhooks signatures (https://www.standardwebhooks.com) and the
status rules of the JSON-API base (2xx done, 408/429/5xx retried, other 4xx dead)."""

from __future__ import annotations

import base64
import hashlib
import hmac

from bridge.adapter import Answer, JsonAPI


def signing_key(secret: str) -> bytes:
    """``whsec_<base64>`` secrets (the Standard Webhooks form) are decoded; others used as is."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


class Receiver(JsonAPI):
    """Any HTTP endpoint: no vendor envelope, and whatever a 2xx carries is an acceptance."""

    VENDOR = "the receiver"

    def raise_for(self, answer: Answer, what: str) -> None:
        if answer.ok:
            return  # a receiver may answer 2xx with any body (or none)
        super().raise_for(answer, what)
