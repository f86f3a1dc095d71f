"""``pbx-bridge serve`` and ``pbx-bridge webhook-url``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from aiohttp import web

from bridge.app import create_app, webhook_token
from bridge.cli.base import Commands, webhook_url, with_db
from bridge.settings import Settings
from bridge.store.db import Database

TICK = (
    "Profile → Webhooks (Профиль → Веб-хуки): add the URL and tick «Завершился звонок» "
    "(call ended) and «Пропущенный звонок» (missed call)"
)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.host:
        settings.server.host = args.host
    if args.port:
        settings.server.port = args.port
    app = create_app(settings)

    async def banner(app: web.Application) -> None:
        from bridge.keys import TOKEN

        token = app[TOKEN]
        configured_token = settings.server.webhook_token is not None
        shown = webhook_url(settings, "<server.webhook_token>" if configured_token else token)
        # Printed to the terminal once, never into the structured log (which masks it).
        print(
            f"\npbx-bridge is listening on {settings.server.host}:{settings.server.port}\n"
            f"  onlinePBX webhook URL: {shown}\n"
            f"  In onlinePBX: {TICK}.\n"
            "  onlinePBX only posts to https URLs with a valid certificate: put a TLS proxy in\n"
            "  front and set server.public_url. `pbx-bridge webhook-url` prints this URL again.\n",
            file=sys.stderr,
            flush=True,
        )

    app.on_startup.append(banner)
    web.run_app(
        app,
        host=settings.server.host,
        port=settings.server.port,
        print=None,
        access_log=None,
        shutdown_timeout=settings.server.shutdown_grace_seconds + 5,
    )
    return 0


def cmd_webhook_url(settings: Settings, args: argparse.Namespace) -> int:
    async def run(db: Database) -> int:
        token, _ = await webhook_token(db, settings)
        print(webhook_url(settings, token))
        return 0

    return asyncio.run(with_db(settings, run))


def register(commands: Commands) -> None:
    serve = commands.add("serve", cmd_serve, help="run the webhook server and the delivery workers")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    commands.add("webhook-url", cmd_webhook_url, help="print the URL to paste into onlinePBX")
