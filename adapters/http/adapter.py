"""``http``: each call log and task POSTed as a versioned JSON document, signed per
Standard Webhooks (https://www.standardwebhooks.com). For in-house CRMs and automation tools.
While a call rings and when it is answered, ``call.ringing`` / ``call.answered`` documents go
out the same way, so a receiver can build its own screen pop.

Document schema (``version`` "1") is in docs/HTTP_ADAPTER.md. 2xx is done; 408/429/5xx
are retried (``Retry-After`` honoured); any other 4xx is dead at once.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC
from typing import Any

import httpx

from adapters.http.api import Receiver, sign
from adapters.http.settings import HttpSettings
from bridge.adapter import (
    Adapter,
    AdapterContext,
    CallLog,
    CheckResult,
    FollowUp,
    LiveCall,
    Permanent,
)
from bridge.call import Call

DOCUMENT_VERSION = "1"


def _who(call: Call) -> dict[str, Any]:
    """The fields every ``call`` object starts with (finished or live)."""
    return {
        "uuid": call.uuid,
        "domain": call.domain,
        "direction": call.direction,
        "client": call.client.e164 if call.client else None,
        "client_raw": call.client_raw,
        "extension": call.extension,
        "line": call.gateway or None,
    }


def call_document(call: Call) -> dict[str, Any]:
    return {
        **_who(call),
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


def live_call_document(call: Call) -> dict[str, Any]:
    """The ``call`` of a live document: what is known while the call is going on."""
    return {**_who(call), "event_at": call.ended_at.isoformat()}  # the webhook's `date`


class HttpAdapter(Adapter):
    """No contact methods: a generic receiver has no contact concept (capabilities by presence)."""

    Settings = HttpSettings
    settings: HttpSettings

    def __init__(self, settings: HttpSettings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self._url = settings.url.get_secret_value()
        self.api = Receiver(settings, ctx, base_url=self._url)
        self._host = httpx.URL(self._url).host

    async def _post(
        self,
        kind: str,
        call: Call,
        body: dict[str, Any],
        *,
        document: dict[str, Any] | None = None,
        scope: str = "",
    ) -> str:
        # Stable per call, kind and (for rings) extension: a retry carries the same id.
        key = f"{call.domain}/{call.uuid}/{kind}" + (f"/{scope}" if scope else "")
        msg_id = "msg_" + hashlib.sha256(key.encode()).hexdigest()[:32]
        document = {
            "version": DOCUMENT_VERSION,
            "type": kind,
            "id": msg_id,
            "call": call_document(call) if document is None else document,
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
        await self.api.request(
            "POST", self._url, what=f"POST {self._host}", content=raw, headers=headers
        )
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

    async def ringing(self, live: LiveCall) -> str:
        return await self._post(
            "call.ringing",
            live.call,
            {"user": live.user_id},
            document=live_call_document(live.call),
            scope=live.extension or "",
        )

    async def answered(self, live: LiveCall) -> str:
        return await self._post(
            "call.answered",
            live.call,
            {"user": live.user_id},
            document=live_call_document(live.call),
        )

    async def check(self) -> CheckResult:
        # Below 500 the answer is read here; 5xx follows the common rules (retryable).
        answer = await self.api.request(
            "OPTIONS", self._url, what=f"OPTIONS {self._host}", allow=range(200, 500)
        )
        host, status = self._host, answer.status
        note = f"{host} answered OPTIONS with HTTP {status}"
        # 405 (no OPTIONS handler) still proves the endpoint exists; these do not.
        refused = {
            401: "the receiver wants credentials: does it verify the signature with this secret?",
            403: "the receiver refuses the bridge: check its allow list and the secret",
            404: "no such endpoint: check url (path included)",
        }
        if status in refused:
            raise Permanent(f"{note}: {refused[status]}")
        return CheckResult(account=host, notes=[note])

    async def aclose(self) -> None:
        await self.api.aclose()
