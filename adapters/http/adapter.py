"""``http``: each call log and task POSTed as a versioned JSON document, signed per
Standard Webhooks (https://www.standardwebhooks.com). For in-house CRMs and automation tools.

Document schema (``version`` "1") is in docs/HTTP_ADAPTER.md. 2xx is done; 408/429/5xx
are retried (``Retry-After`` honoured); any other 4xx is dead at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC
from typing import Any

import httpx
from pydantic import SecretStr, field_validator

from bridge.adapter import (
    Adapter,
    AdapterSettings,
    CallLog,
    CheckResult,
    FollowUp,
    Permanent,
    raise_for_status,
)
from bridge.call import Call

DOCUMENT_VERSION = "1"


class HttpSettings(AdapterSettings):
    url: str
    secret: SecretStr
    rate_limit: float = 10.0

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, v: SecretStr) -> SecretStr:
        # A ``whsec_`` secret is base64: a broken one would sign with garbage the receiver
        # can never verify, so every delivery would fail there instead of here.
        text = v.get_secret_value()
        if text.startswith("whsec_"):
            try:
                key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not key:
                raise ValueError(
                    "a whsec_ secret is whsec_ followed by base64 (copy it whole from the"
                    " receiving side); anything else is used as a plain string without the prefix"
                )
        return v


def signing_key(secret: str) -> bytes:
    """``whsec_<base64>`` secrets (the Standard Webhooks form) are decoded; others used as is."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode("utf-8")


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(signing_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def call_document(call: Call) -> dict[str, Any]:
    return {
        "uuid": call.uuid,
        "domain": call.domain,
        "direction": call.direction,
        "client": call.client.e164 if call.client else None,
        "client_raw": call.client_raw,
        "extension": call.extension,
        "line": call.gateway or None,
        "started_at": call.started_at.isoformat(),
        "ended_at": call.ended_at.isoformat(),
        "total_seconds": call.total_seconds,
        "talk_seconds": call.talk_seconds,
        "answered": call.answered,
        "outcome": call.outcome,
        "hangup_cause": call.hangup_cause or None,
        "hangup_by": call.hangup_by or None,
        "recording_url": call.recording_url,
        "recovered": call.recovered,
    }


class HttpAdapter(Adapter):
    """No contact methods: a generic receiver has no contact concept (capabilities by presence)."""

    Settings = HttpSettings
    settings: HttpSettings

    def __init__(self, settings: HttpSettings, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._client = ctx.http_client(settings, settings.url)

    async def _post(self, kind: str, call: Call, body: dict[str, Any]) -> str:
        msg_id = (
            "msg_" + hashlib.sha256(f"{call.domain}/{call.uuid}/{kind}".encode()).hexdigest()[:32]
        )
        document = {
            "version": DOCUMENT_VERSION,
            "type": kind,
            "id": msg_id,
            "call": call_document(call),
            **body,
        }
        raw = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        timestamp = int(self.ctx.clock())
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(
                self.settings.secret.get_secret_value(), msg_id, timestamp, raw
            ),
        }
        response = await self._client.request(
            "POST", self.settings.url, content=raw, headers=headers
        )
        raise_for_status(response, f"POST {httpx.URL(self.settings.url).host}")
        return msg_id

    async def log_call(self, log: CallLog) -> str:
        return await self._post(
            "call.logged",
            log.call,
            {
                "responsible_user": log.user_id,
                "title": log.title,
                "result": log.result,
            },
        )

    async def create_task(self, task: FollowUp) -> str:
        return await self._post(
            "task.created",
            task.call,
            {
                "responsible_user": task.user_id,
                "task": {
                    "title": task.title,
                    "description": task.description,
                    "due_at": task.due_at.isoformat(),
                    "due_at_utc": task.due_at.astimezone(UTC).isoformat(),
                },
            },
        )

    async def check(self) -> CheckResult:
        response = await self._client.request("OPTIONS", self.settings.url)
        host = httpx.URL(self.settings.url).host
        note = f"{host} answered OPTIONS with HTTP {response.status_code}"
        if response.status_code >= 500:
            raise_for_status(response, f"OPTIONS {host}")
        # 405 (no OPTIONS handler) still proves the endpoint exists; these do not.
        refused = {
            401: "the receiver wants credentials: does it verify the signature with this secret?",
            403: "the receiver refuses the bridge: check its allow list and the secret",
            404: "no such endpoint: check url (path included)",
        }
        if response.status_code in refused:
            raise Permanent(f"{note}: {refused[response.status_code]}")
        return CheckResult(account=host, notes=[note])

    async def aclose(self) -> None:
        await self._client.aclose()
