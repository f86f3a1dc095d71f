"""Where alerts go: Telegram (Bot API ``sendMessage``), e-mail (SMTP), a signed webhook.

Each channel's ``send(alert)`` returns on success and raises :class:`ChannelError` (with the
wait the service asked for, e.g. Telegram's ``retry_after``) otherwise. Error texts go
through the redactor: a bot token sits in Telegram's URL, so an httpx error would name it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import smtplib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

import httpx

from bridge.redact import REDACTOR
from bridge.settings import AlertsSettings, EmailAlerts, TelegramAlerts, WebhookAlerts

TELEGRAM_LIMIT = 4096  # characters in one Bot API message


@dataclass(frozen=True, slots=True)
class Alert:
    subject: str
    text: str
    adapter: str | None = None  # None: about the bridge as a whole (e.g. recovered calls)
    counts: dict[str, Any] = field(default_factory=dict)

    def document(self) -> dict[str, Any]:
        return {
            "type": "pbx_bridge.alert",
            "adapter": self.adapter,
            "subject": self.subject,
            "text": self.text,
            "counts": self.counts,
        }


class ChannelError(Exception):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(REDACTOR(reason))
        self.reason = REDACTOR(reason)
        self.retry_after = retry_after


class Channel(Protocol):
    name: str

    async def send(self, alert: Alert) -> None: ...


class Telegram:
    name = "telegram"

    def __init__(self, settings: TelegramAlerts, client: httpx.AsyncClient) -> None:
        token = settings.bot_token.get_secret_value()
        REDACTOR.add(token)
        self._url = f"{settings.base_url.rstrip('/')}/bot{token}/sendMessage"
        self._chat = settings.chat_id
        self._client = client

    async def send(self, alert: Alert) -> None:
        text = f"{alert.subject}\n\n{alert.text}"[:TELEGRAM_LIMIT]
        body = {"chat_id": self._chat, "text": text, "disable_web_page_preview": True}
        try:
            response = await self._client.post(self._url, json=body)
        except httpx.HTTPError as exc:
            raise ChannelError(f"telegram: {type(exc).__name__}: {exc}") from exc
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 200 and answer.get("ok") is True:
            return
        # {"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 5",
        #  "parameters": {"retry_after": 5}}
        retry_after = (answer.get("parameters") or {}).get("retry_after")
        description = answer.get("description") or response.reason_phrase
        raise ChannelError(
            f"telegram: HTTP {response.status_code}: {description}",
            float(retry_after) if retry_after is not None else None,
        )


class Email:
    name = "email"

    def __init__(self, settings: EmailAlerts) -> None:
        self._s = settings
        if settings.password is not None:
            REDACTOR.add(settings.password.get_secret_value())

    def _send(self, alert: Alert) -> None:
        s = self._s
        message = EmailMessage()
        message["Subject"] = alert.subject
        message["From"] = s.sender
        message["To"] = ", ".join(s.to)
        message.set_content(alert.text)
        context = ssl.create_default_context()
        smtp_class = smtplib.SMTP_SSL if s.security == "ssl" else smtplib.SMTP
        kwargs: dict[str, Any] = {"context": context} if s.security == "ssl" else {}
        with smtp_class(s.host, s.port, timeout=s.timeout_seconds, **kwargs) as smtp:
            if s.security == "starttls":
                smtp.starttls(context=context)
            if s.username and s.password is not None:
                smtp.login(s.username, s.password.get_secret_value())
            smtp.send_message(message)

    async def send(self, alert: Alert) -> None:
        try:
            await asyncio.to_thread(self._send, alert)
        except (OSError, smtplib.SMTPException) as exc:
            raise ChannelError(f"email: {type(exc).__name__}: {exc}") from exc


class Webhook:
    """A JSON POST signed like Standard Webhooks (``webhook-id``, ``-timestamp``, ``-signature``:
    ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``; a ``whsec_`` secret is base64)."""

    name = "webhook"

    def __init__(self, settings: WebhookAlerts, client: httpx.AsyncClient) -> None:
        self._s = settings
        self._client = client
        REDACTOR.add(settings.secret.get_secret_value())

    def _key(self) -> bytes:
        secret = self._s.secret.get_secret_value()
        raw = secret.removeprefix("whsec_")
        return base64.b64decode(raw) if secret.startswith("whsec_") else secret.encode()

    async def send(self, alert: Alert) -> None:
        body = json.dumps(alert.document(), ensure_ascii=False).encode()
        msg_id, stamp = f"alert_{secrets.token_hex(12)}", int(time.time())
        mac = hmac.new(self._key(), f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(mac.digest()).decode(),
        }
        try:
            response = await self._client.post(
                self._s.url, content=body, headers=headers, timeout=self._s.timeout_seconds
            )
        except httpx.HTTPError as exc:
            raise ChannelError(f"webhook: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            wait = response.headers.get("Retry-After", "")
            raise ChannelError(
                f"webhook: HTTP {response.status_code}",
                float(wait) if wait.isdigit() else None,
            )


def channels(settings: AlertsSettings, client: httpx.AsyncClient) -> list[Channel]:
    out: list[Channel] = []
    if settings.telegram is not None:
        out.append(Telegram(settings.telegram, client))
    if settings.email is not None:
        out.append(Email(settings.email))
    if settings.webhook is not None:
        out.append(Webhook(settings.webhook, client))
    return out
