"""The onlinePBX parts of the CLI: ``pbx-bridge backfill`` and the ``check`` section."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import datetime
from zoneinfo import ZoneInfo

from tqdm import tqdm

from bridge.adapter import CREATE_TASK
from bridge.call import CALL_MISSED
from bridge.deliver.service import job_planner, without
from bridge.onlinepbx.backfill import Backfill, Window
from bridge.onlinepbx.client import ApiError, OnlinePBX
from bridge.onlinepbx.reconcile import Reconciler, RecoveryWriter, Tally
from bridge.onlinepbx.service import setup_problems
from bridge.redact import REDACTOR
from bridge.registry import configured
from bridge.settings import Settings
from bridge.store import Storage

NOT_CONFIGURED = "set [onlinepbx] domain and api_key to use the onlinePBX API"


def parse_moment(text: str, zone: str) -> int:
    """``2026-03-01`` or ``2026-03-01T09:30`` (in ``zone`` unless it names its own) → UNIX."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a date: use YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return int(moment.timestamp())


def moment(text: str) -> str:
    """The parser's check of --since/--until (the zone is applied once settings are read)."""
    parse_moment(text, "UTC")
    return text


def _when(stamp: int, zone: str) -> str:
    return datetime.fromtimestamp(stamp, ZoneInfo(zone)).strftime("%Y-%m-%d %H:%M")


async def check(settings: Settings, db: Storage) -> int:
    """Print warnings about recordings, and prove the API key works; the failures."""
    for problem in setup_problems(settings):
        print(f"[WARN] {problem}")
    if not settings.onlinepbx.enabled:
        return 0
    api = OnlinePBX(settings.onlinepbx, db)
    try:
        now = int(time.time())
        await api.history(now - 60, now)
    except ApiError as exc:
        print(f"[FAIL] onlinepbx: {REDACTOR(str(exc))}")
        return 1
    finally:
        await api.aclose()
    print(f"[ OK ] onlinepbx: {settings.onlinepbx.domain} (the API key works)")
    return 0


async def backfill(settings: Settings, db: Storage, args: argparse.Namespace) -> int:
    pbx, zone = settings.onlinepbx, settings.schedule.timezone
    if not pbx.enabled:
        print(NOT_CONFIGURED, file=sys.stderr)
        return 2
    since = parse_moment(args.since, zone)
    until = parse_moment(args.until, zone) if args.until else int(time.time())
    if since >= until:
        print("--since must be before --until", file=sys.stderr)
        return 2
    kept_from = time.time() - settings.storage.retention_days * 86400
    if since < kept_from and not (args.dry_run or getattr(args, "force", False)):
        # Older events (and the rows that deduplicate them) are pruned: their calls would be
        # taken as new and delivered to CRMs that may have them already.
        print(  # a dry run queues nothing, so it may count such a range
            f"--since is before what the bridge remembers: storage.retention_days ="
            f" {settings.storage.retention_days:g} keeps events from {_when(int(kept_from), zone)};"
            " calls before that were pruned and would be delivered again (the CRM may have"
            " them). Start later, or add --force to recover them anyway.",
            file=sys.stderr,
        )
        return 2
    planner = job_planner(configured(settings.adapters))
    if getattr(args, "logs_only", False):
        planner = without(planner, {CREATE_TASK})
    task_adapters = [name for name, action in planner(CALL_MISSED) if action == CREATE_TASK]
    if task_adapters and not args.dry_run:
        print(
            f"missed calls in this range become tasks in {', '.join(task_adapters)} (due in"
            " working hours from now); --logs-only skips them, --dry-run counts them first",
            file=sys.stderr,
        )
    api = OnlinePBX(pbx, db)
    writer = None
    if not args.dry_run:
        writer = RecoveryWriter(db, planner)
    job = Backfill(
        Reconciler(api, writer, db),
        db,
        since,
        until,
        int(pbx.backfill_window_hours * 3600),
        dry_run=args.dry_run,
    )
    resume = await job.resume_point()
    if resume > since:
        print(f"resuming an earlier run from {_when(resume, zone)}", file=sys.stderr)
    left = [w for w in job.windows if w.end >= resume]
    total = Tally()
    bar = tqdm(total=len(left), unit="window", file=sys.stderr, disable=args.quiet)

    def progress(window: Window, tally: Tally) -> None:
        total.add(tally)
        bar.set_postfix(found=total.found, known=total.known, queued=total.queued)
        bar.update(1)

    try:
        await job.run(progress)
    except (ApiError, asyncio.CancelledError) as exc:  # Ctrl-C cancels the task under asyncio.run
        bar.close()
        point = _when(await job.resume_point(), zone)
        interrupted = isinstance(exc, asyncio.CancelledError)
        print(f"stopped: {'interrupted' if interrupted else REDACTOR(str(exc))}", file=sys.stderr)
        print(f"run the same command again to continue from {point}", file=sys.stderr)
        _summary(total, args.dry_run, len(task_adapters))
        return 130 if interrupted else 1
    finally:
        bar.close()
        await api.aclose()
    _summary(total, args.dry_run, len(task_adapters))
    return 0


def _summary(total: Tally, dry_run: bool, task_adapters: int) -> None:
    queued = "would be queued" if dry_run else "queued"
    tasks = total.missed * task_adapters
    print(
        f"calls found: {total.found}, already known: {total.known}, {queued}: {total.queued},"
        f" internal (skipped): {total.internal}"
    )
    print(
        f"tasks {'that would be created' if dry_run else 'to be created'}: {tasks}"
        f" ({total.missed} missed call(s) × {task_adapters} adapter(s) creating tasks)"
    )
    if total.queued and not dry_run:
        print("queued calls are delivered by `pbx-bridge serve` (within a minute if it runs)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``pbx-bridge backfill`` (the subcommand is made in bridge/cli/backfill.py)."""
    p.add_argument(
        "--since", required=True, type=moment, help="YYYY-MM-DD[THH:MM], schedule time zone"
    )
    p.add_argument("--until", type=moment, help="end of the range (default: now)")
    p.add_argument(
        "--logs-only",
        action="store_true",
        help="only call logs: missed calls are recorded but create no task",
    )
    p.add_argument("--dry-run", action="store_true", help="count, queue nothing")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--force",
        action="store_true",
        help="allow a range older than storage.retention_days (may deliver calls again)",
    )
