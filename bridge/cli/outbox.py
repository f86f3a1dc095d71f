"""``pbx-bridge outbox stats|list|show|retry|purge``: the delivery queue."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from typing import Any

from bridge.cli.base import Commands, days_at_least_one, emit, row_count, row_id, with_db
from bridge.redact import REDACTOR
from bridge.settings import Settings
from bridge.store import Storage
from bridge.store.outbox import STATUSES, Outbox
from bridge.store.retention import prune

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
            emit(rows, ("adapter", *STATUSES), args.json)
        elif args.action == "list":
            jobs = await outbox.list(status=args.status, adapter=args.adapter, limit=args.limit)
            emit([_job_row(j) for j in jobs], JOB_COLUMNS, args.json)
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
            cutoff = time.time() - args.older_than_days * 86400
            when = datetime.fromtimestamp(cutoff, UTC).strftime("%Y-%m-%d %H:%M UTC")
            print(
                f"removing done jobs finished before {when}, and the events and CRM ids of"
                " calls older than that with nothing left to do; pending and dead jobs are"
                " kept",
                file=sys.stderr,
            )
            # The same chunked pruning as the hourly retention run (short write locks).
            deleted = await prune(db, cutoff)
            print(
                f"purged {deleted['jobs']} done job(s), {deleted['events']} event(s) and"
                f" {deleted['crm_objects']} CRM id(s) older than {args.older_than_days} day(s)"
            )
        return 0

    return asyncio.run(with_db(settings, run))


def register(commands: Commands) -> None:
    outbox = commands.add("outbox", help="inspect and repair the delivery outbox")
    actions = commands.group(outbox, "action")
    stats = actions.add("stats", cmd_outbox, help="job counts by adapter and status")
    stats.add_argument("--json", action="store_true")
    lst = actions.add("list", cmd_outbox, help="recent jobs")
    lst.add_argument("--status", choices=STATUSES)
    lst.add_argument("--adapter")
    lst.add_argument("--limit", type=row_count, default=50)
    lst.add_argument("--json", action="store_true")
    show = actions.add("show", cmd_outbox, help="one job in full")
    show.add_argument("id", type=row_id)
    retry = actions.add("retry", cmd_outbox, help="send dead jobs back to pending")
    retry.add_argument("ids", type=row_id, nargs="*", metavar="ID")
    retry.add_argument("--all", action="store_true")
    purge = actions.add(
        "purge",
        cmd_outbox,
        help="delete old done jobs, and events and CRM ids with nothing left to do",
    )
    purge.add_argument(
        "--older-than-days",
        type=days_at_least_one,
        default=30,
        metavar="N",
        help="age in days, at least 1 (default 30)",
    )
