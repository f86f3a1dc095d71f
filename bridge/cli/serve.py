"""``pbx-bridge serve`` and ``pbx-bridge webhook-url``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import socket
import sys
from pathlib import Path

from aiohttp import web

from bridge.app import create_app, webhook_token
from bridge.cli.base import CommandError, Commands, open_database, webhook_url, with_db
from bridge.receive import server
from bridge.settings import Settings
from bridge.store import Storage, StorageError
from bridge.store.ports import redact_url

BACKLOG = 128  # aiohttp's default
TICK = (
    "Profile → Webhooks (Профиль → Веб-хуки): add the URL and tick «Завершился звонок» "
    "(call ended) and «Пропущенный звонок» (missed call)"
)
TICK_LIVE = (
    "; for the caller's card while the phone rings (live actions of {names}) also "
    "«Начался звонок» (call started) and «Ответили на звонок» (call answered)"
)


def live_adapters(settings: Settings) -> list[str]:
    """The configured adapters that act while a call rings (their events list a live action
    and the adapter has it): for them the onlinePBX live checkboxes matter."""
    from bridge.adapter.contract import LIVE_ACTIONS, supports
    from bridge.registry import configured

    return [
        item.name
        for item in configured(settings.adapters, settings.source)
        if any(a in item.settings.events and supports(item.cls, a) for a in LIVE_ACTIONS)
    ]


def tick(settings: Settings) -> str:
    names = live_adapters(settings)
    return TICK + (TICK_LIVE.format(names=", ".join(names)) if names else "")


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, taken before any other start-up work, so "port in use" is the
    first thing said and the banner never claims a port another process holds."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CommandError(
            f"server.host {host!r} is not an address here: {exc.strerror}", 2
        ) from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as aiohttp does
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is already in use (another pbx-bridge?"
                f" `ss -ltnp 'sport = :{port}'` shows who has it); stop it, or choose another"
                " with server.port or --port",
                2,
            ) from exc
        if exc.errno == errno.EACCES:
            raise CommandError(
                f"port {port} needs privileges this user lacks; use a port above 1023"
                " behind your TLS proxy (docs/DEPLOY.md)",
                2,
            ) from exc
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}", 2) from exc
    sock.setblocking(False)
    return sock


def _check_database(settings: Settings) -> None:
    """Open (creating if new) and close the database: a path that cannot be used is named
    here in words, not as a traceback from the middle of the start-up."""

    async def probe() -> None:
        db = await open_database(settings, create=True)
        await db.close()

    asyncio.run(probe())


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    if args.host:
        settings.server.host = args.host
    if args.port:
        settings.server.port = args.port
    socks = [bind(settings.server.host, settings.server.port)]
    try:
        listen = settings.server.metrics_listen
        if listen is not None:
            socks.append(bind(listen.host, listen.port))
        _check_database(settings)
        app = create_app(settings)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    url = settings.storage.url
    database = redact_url(url.get_secret_value()) if url else Path(settings.storage.path).absolute()

    async def banner(app: web.Application) -> None:
        from bridge.keys import TOKEN, TOKEN_NEW

        configured_token = settings.server.webhook_token is not None
        if configured_token:
            shown = webhook_url(settings, "<server.webhook_token>")
        elif app[TOKEN_NEW] and sys.stderr.isatty():
            # The URL holds the secret: shown once, on the start that made it, and only to a
            # terminal (never into log files or `docker logs`); `webhook-url` shows it again.
            shown = webhook_url(settings, app[TOKEN])
        else:
            shown = "run `pbx-bridge webhook-url` to see it (it holds the secret token)"
        print(
            f"\npbx-bridge is listening on {settings.server.host}:{settings.server.port}\n"
            f"  database (storage.{'url' if url else 'path'}): {database}\n"
            + (
                f"  /metrics, /readyz, /healthz on {settings.server.metrics_listen}\n"
                if settings.server.metrics_listen
                else ""
            )
            + f"  onlinePBX webhook URL: {shown}\n"
            f"  In onlinePBX: {tick(settings)}.\n"
            "  onlinePBX only posts to https URLs with a valid certificate: put a TLS proxy in\n"
            "  front and set server.public_url. `pbx-bridge webhook-url` prints this URL again.\n",
            file=sys.stderr,
            flush=True,
        )

    app.on_startup.append(banner)
    try:
        server.run(app, socks=socks, shutdown_timeout=settings.server.shutdown_grace_seconds + 5)
    except StorageError as exc:  # a second serve on one SQLite file, an unreachable server…
        raise CommandError(str(exc), 1) from exc
    return 0


def cmd_webhook_url(settings: Settings, args: argparse.Namespace) -> int:
    if settings.server.webhook_token is not None:  # no database needed
        print(webhook_url(settings, settings.server.webhook_token.get_secret_value()))
        return 0

    async def run(db: Storage) -> int:
        token, _ = await webhook_token(db, settings)
        print(webhook_url(settings, token))
        return 0

    return asyncio.run(with_db(settings, run))


def register(commands: Commands) -> None:
    serve = commands.add("serve", cmd_serve, help="run the webhook server and the delivery workers")
    serve.add_argument("--host", help="listen address (overrides server.host)")
    serve.add_argument("--port", type=int, help="listen port (overrides server.port)")
    commands.add("webhook-url", cmd_webhook_url, help="print the URL to paste into onlinePBX")
