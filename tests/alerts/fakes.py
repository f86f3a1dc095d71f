"""Local stand-ins for the alert channels: the Telegram Bot API and an SMTP server.

The fake Bot API answers like the real one (https://core.telegram.org/bots/api): every answer
is ``{"ok": …}``; a wrong token is 401 ``Unauthorized``, an unknown chat 400 ``Bad Request:
chat not found``, an empty or over-long text 400, and flood control 429 with
``parameters.retry_after``.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller

BOT_TOKEN = "123456:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
CHAT_ID = "-1001234567890"


@dataclass
class FakeTelegram:
    token: str = BOT_TOKEN
    chats: tuple[str, ...] = (CHAT_ID,)
    flood: int = 0  # answer this many next requests with 429
    retry_after: int = 3
    sent: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/bot{token}/sendMessage", self.send_message)
        return app

    @staticmethod
    def _error(status: int, description: str, **extra: Any) -> web.Response:
        body = {"ok": False, "error_code": status, "description": description, **extra}
        return web.json_response(body, status=status)

    async def send_message(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        if self.flood:
            self.flood -= 1
            return self._error(
                429,
                f"Too Many Requests: retry after {self.retry_after}",
                parameters={"retry_after": self.retry_after},
            )
        body = await request.json()
        if str(body.get("chat_id")) not in self.chats:
            return self._error(400, "Bad Request: chat not found")
        text = body.get("text") or ""
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return self._error(400, "Bad Request: message is too long")
        self.sent.append(body)
        message = {
            "message_id": len(self.sent),
            "chat": {"id": int(body["chat_id"]), "type": "supergroup"},
            "date": int(time.time()),
            "text": text,
        }
        return web.json_response({"ok": True, "result": message})


class Mailbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_server() -> tuple[Controller, Mailbox]:
    """A real SMTP server on loopback (its own thread); stop it with ``controller.stop()``."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    return controller, box
