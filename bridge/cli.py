"""``pbx-bridge``: serve, check, outbox, send-sample, calls, tasks, webhook-url, backfill,
migrate."""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx
from aiohttp import web

from bridge import logs
from bridge.app import WEBHOOK_PATH, create_app, webhook_token
from bridge.deliver.service import build_adapter
from bridge.metrics import Metrics
from bridge.onlinepbx import commands as onlinepbx
from bridge.redact import REDACTOR
from bridge.registry import configured
from bridge.samples import SAMPLES, sample
from bridge.settings import Settings, SettingsError, load_settings
from bridge.store import STATUSES, Outbox, Storage, StorageError, open_storage, prune
from bridge.store.migrations import LATEST

TICK = (
    "Profile → Webhooks (Профиль → Веб-хуки): add the URL and tick «Завершился звонок» "
    "(call ended) and «Пропущенный звонок» (missed call)"
)


def _print_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    if not rows:
        print("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "") or "")) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "") or "").ljust(widths[c]) for c in columns))


def _emit(rows: list[dict[str, Any]], columns: Sequence[str], as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows, ensure_ascii=False, indent=2, default=str))
    else:
        _print_table(rows, columns)


def public_base(settings: Settings) -> str:
    if settings.server.public_url:
        return settings.server.public_url.rstrip("/")
    host = settings.server.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://{host}:{settings.server.port}"


def webhook_url(settings: Settings, token: str) -> str:
    return public_base(settings) + WEBHOOK_PATH.format(token=token)


async def _with_db(settings: Settings, fn: Callable[[Storage], Awaitable[int]]) -> int:
    try:
        db = await open_storage(settings.storage)
    except StorageError as exc:
        print(f"pbx-bridge: {exc}", file=sys.stderr)
        return 1
    try:
        return await fn(db)
    finally:
        await db.close()


# --- serve --------------------------------------------------------------------------------


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
    try:
        web.run_app(
            app,
            host=settings.server.host,
            port=settings.server.port,
            print=None,
            access_log=None,
            shutdown_timeout=settings.server.shutdown_grace_seconds + 5,
        )
    except StorageError as exc:  # a second serve on one SQLite file, an unreachable server…
        print(f"pbx-bridge: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_webhook_url(settings: Settings, args: argparse.Namespace) -> int:
    async def run(db: Storage) -> int:
        token, _ = await webhook_token(db, settings)
        print(webhook_url(settings, token))
        return 0

    return asyncio.run(_with_db(settings, run))


# --- check --------------------------------------------------------------------------------


def _masked(settings: Settings) -> dict[str, Any]:
    def mask(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        if isinstance(value, str):
            return REDACTOR(value)
        return value

    return mask(json.loads(settings.model_dump_json()))


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    adapters = configured(settings.adapters)
    for item in adapters:
        REDACTOR.add(*item.settings.secrets())
    dumped = _masked(settings)
    dumped["adapters"] = {a.name: _masked_model(a.settings) for a in adapters}
    print("Settings are valid:")
    print(json.dumps(dumped, ensure_ascii=False, indent=2, default=str))

    async def run(db: Storage) -> int:
        failures = 0
        for item in adapters:
            adapter = build_adapter(item, settings, db, Metrics())
            try:
                await adapter.setup()
                result = await adapter.check()
            except Exception as exc:
                failures += 1
                reason = getattr(exc, "reason", None) or f"{type(exc).__name__}: {exc}"
                print(f"[FAIL] {item.name}: {REDACTOR(str(reason))}")
                continue
            finally:
                await adapter.aclose()
            print(f"[ OK ] {item.name}: {REDACTOR(result.account)}")
            for note in result.notes:
                print(f"       {REDACTOR(note)}")
            if result.users:
                print("       users (id: name) for the `users` map:")
                for uid, name in result.users:
                    print(f"         {uid}: {name}")
        failures += await onlinepbx.check(settings, db)
        return 1 if failures else 0

    return asyncio.run(_with_db(settings, run))


def _masked_model(model: Any) -> dict[str, Any]:
    data = json.loads(model.model_dump_json())
    return {k: REDACTOR(v) if isinstance(v, str) else v for k, v in data.items()}


# --- outbox -------------------------------------------------------------------------------

JOB_COLUMNS = (
    "id",
    "adapter",
    "action",
    "status",
    "attempts",
    "uuid",
    "event",
    "due",
    "last_error",
    "result",
)


def _job_row(job: Any) -> dict[str, Any]:
    row = job.as_dict()
    row.pop("payload")
    row["due"] = datetime.fromtimestamp(job.due_at, UTC).strftime("%Y-%m-%d %H:%M:%S")
    row["last_error"] = REDACTOR(row["last_error"] or "")[:80]
    return row


def cmd_outbox(settings: Settings, args: argparse.Namespace) -> int:
    async def run(db: Storage) -> int:
        outbox = Outbox(db)
        if args.action == "stats":
            counts = await outbox.counts()
            rows = [{"adapter": a, **c} for a, c in sorted(counts.items())]
            _emit(rows, ("adapter", *STATUSES), args.json)
        elif args.action == "list":
            jobs = await outbox.list(status=args.status, adapter=args.adapter, limit=args.limit)
            _emit([_job_row(j) for j in jobs], JOB_COLUMNS, args.json)
        elif args.action == "show":
            job = await outbox.get(args.id)
            if job is None:
                print(f"no job {args.id}", file=sys.stderr)
                return 1
            data = job.as_dict()
            data["last_error"] = REDACTOR(data["last_error"] or "") or None
            print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
        elif args.action == "retry":
            if not args.all and not args.ids:
                print("give job ids, or --all for every dead job", file=sys.stderr)
                return 2
            n = await outbox.retry_dead(None if args.all else args.ids)
            print(f"{n} dead job(s) are pending again")
        elif args.action == "purge":
            # The same chunked pruning as the hourly retention run (short write locks).
            deleted = await prune(db, time.time() - args.older_than_days * 86400)
            print(
                f"purged {deleted['jobs']} done job(s), {deleted['events']} event(s) and"
                f" {deleted['crm_objects']} CRM id(s) older than {args.older_than_days} day(s)"
            )
        return 0

    return asyncio.run(_with_db(settings, run))


# --- calls / tasks (local adapter) -----------------------------------------------------------


def cmd_list_local(kind: str) -> Callable[[Settings, argparse.Namespace], int]:
    def command(settings: Settings, args: argparse.Namespace) -> int:
        from adapters.local import list_calls, list_tasks

        async def run(db: Storage) -> int:
            if kind == "calls":
                rows = await list_calls(db, args.limit)
                columns = (
                    "id",
                    "started_at",
                    "direction",
                    "client",
                    "extension",
                    "line",
                    "talk_seconds",
                    "result",
                    "user_id",
                )
            else:
                rows = await list_tasks(db, args.limit)
                columns = ("id", "due_at", "client", "title", "user_id")
            _emit(rows, columns, args.json)
            return 0

        return asyncio.run(_with_db(settings, run))

    return command


# --- send-sample --------------------------------------------------------------------------


def cmd_send_sample(settings: Settings | None, args: argparse.Namespace) -> int:
    body = sample(args.event, uuid=args.uuid, now=time.time())
    try:
        if args.as_json:
            response = httpx.post(args.url, json=body, timeout=10)
        else:
            response = httpx.post(args.url, data=body, timeout=10)
    except httpx.HTTPError as exc:
        print(f"could not post to the bridge: {exc}", file=sys.stderr)
        return 1
    print(f"HTTP {response.status_code} {response.text}")
    print(f"sent {args.event} uuid={body['uuid']}")
    return 0 if response.is_success else 1


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    """Bring the database to the latest schema (serve does it too, at start), and say so."""

    async def run(db: Storage) -> int:
        before, after = db.migrated
        if before == after:
            print(f"{db.where}: schema version {after}, up to date")
        else:
            print(f"{db.where}: migrated from schema version {before} to {after}")
        return 0

    return asyncio.run(_with_db(settings, run))


def cmd_backfill(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_with_db(settings, lambda db: onlinepbx.backfill(settings, db, args)))


# --- main ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbx-bridge", description=__doc__)
    parser.add_argument("--config", "-c", help="settings TOML file (or $PBX_BRIDGE_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the webhook server and the delivery workers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(fn=cmd_serve)

    check = sub.add_parser("check", help="validate settings and try every adapter's credentials")
    check.set_defaults(fn=cmd_check)

    url = sub.add_parser("webhook-url", help="print the URL to paste into onlinePBX")
    url.set_defaults(fn=cmd_webhook_url)

    outbox = sub.add_parser("outbox", help="inspect and repair the delivery outbox")
    osub = outbox.add_subparsers(dest="action", required=True)
    stats = osub.add_parser("stats", help="job counts by adapter and status")
    stats.add_argument("--json", action="store_true")
    lst = osub.add_parser("list", help="recent jobs")
    lst.add_argument("--status", choices=STATUSES)
    lst.add_argument("--adapter")
    lst.add_argument("--limit", type=int, default=50)
    lst.add_argument("--json", action="store_true")
    show = osub.add_parser("show", help="one job in full")
    show.add_argument("id", type=int)
    retry = osub.add_parser("retry", help="send dead jobs back to pending")
    retry.add_argument("ids", type=int, nargs="*")
    retry.add_argument("--all", action="store_true")
    purge = osub.add_parser(
        "purge", help="delete old done jobs, and events and CRM ids with nothing left to do"
    )
    purge.add_argument("--older-than-days", type=float, default=30)
    outbox.set_defaults(fn=cmd_outbox)

    for kind in ("calls", "tasks"):
        p = sub.add_parser(kind, help=f"{kind} written by the local adapter")
        p.add_argument("--limit", type=int, default=50)
        p.add_argument("--json", action="store_true")
        p.set_defaults(fn=cmd_list_local(kind))

    onlinepbx.add_parser(sub).set_defaults(fn=cmd_backfill)

    migrate = sub.add_parser(
        "migrate",
        help=f"apply the pending schema migrations (latest: {LATEST}); serve also does at start",
    )
    migrate.set_defaults(fn=cmd_migrate)

    send = sub.add_parser("send-sample", help="post a vendor-shaped onlinePBX event")
    send.add_argument("event", choices=sorted(SAMPLES))
    send.add_argument("--url", required=True, help="the bridge's webhook URL")
    send.add_argument("--uuid")
    send.add_argument("--json", dest="as_json", action="store_true", help="post JSON, not a form")
    send.set_defaults(fn=cmd_send_sample, needs_settings=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not getattr(args, "needs_settings", True):
        return args.fn(None, args)
    try:
        settings = load_settings(args.config)
        logs.configure(settings.log.level, settings.log.format)
        return args.fn(settings, args)
    except SettingsError as exc:
        print(str(exc), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
