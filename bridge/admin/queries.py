"""Every read and write of the console and the alerts, in one place.

The console needs questions the delivery path never asks (counts per adapter, hourly
buckets, searches), and a little storage of its own: the capped table of refused webhooks
and hourly intake counters. Keeping all of it here means moving it onto another storage
backend is one module.

Costs with 100,000 calls stored (bench/console.py): time-bounded questions first find the
first event id of the window by bisecting ``events.id`` (ids grow with arrival time, as
retention also relies on), so the last 24 hours never scan the whole table.
"""

from __future__ import annotations

import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bridge.store.db import Database, in_transaction
from bridge.store.outbox import DEAD, PENDING, STATUSES, Job, Outbox

REJECTED_CAP = 1000  # rows kept in rejected_webhooks; older ones are deleted
TERMINAL = ("call_end", "call_missed")
LIVE_WINDOW = 3 * 3600.0  # a call with no end event after this long is not shown as live
SEARCH_SCAN = 2000  # events looked at per search page (then grouped into calls)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rejected_webhooks (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    sender  TEXT NOT NULL,
    status  INTEGER NOT NULL,
    reason  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS intake_hourly (
    hour    INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (hour, outcome)
);
"""


async def ensure_schema(db: Database) -> None:
    def create(conn: sqlite3.Connection) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)

    await db.run(in_transaction(create))


# --- intake (written by bridge.admin.intake) ------------------------------------------------


async def save_intake(
    db: Database, counts: dict[tuple[int, str], int], rejected: list[tuple[Any, ...]]
) -> None:
    """Add hourly counters and refused requests; keep only the newest REJECTED_CAP refusals."""

    def write(conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO intake_hourly (hour, outcome, n) VALUES (?, ?, ?)"
            " ON CONFLICT (hour, outcome) DO UPDATE SET n = n + excluded.n",
            [(hour, outcome, n) for (hour, outcome), n in counts.items()],
        )
        if rejected:
            conn.executemany(
                "INSERT INTO rejected_webhooks (at, sender, status, reason, detail)"
                " VALUES (?, ?, ?, ?, ?)",
                rejected,
            )
            conn.execute(
                "DELETE FROM rejected_webhooks WHERE id <= (SELECT MAX(id) FROM"
                " rejected_webhooks) - ?",
                (REJECTED_CAP,),
            )

    await db.run(in_transaction(write))


async def intake_since(db: Database, since: float) -> dict[str, int]:
    rows = await db.fetchall(
        "SELECT outcome, SUM(n) FROM intake_hourly WHERE hour >= ? GROUP BY outcome",
        (int(since // 3600),),
    )
    return {r[0]: r[1] for r in rows}


async def rejected(db: Database, limit: int = 200) -> list[dict[str, Any]]:
    rows = await db.fetchall(
        "SELECT at, sender, status, reason, detail FROM rejected_webhooks ORDER BY id DESC LIMIT ?",
        (limit,),
    )
    return [dict(r) for r in rows]


# --- time windows -------------------------------------------------------------------------


async def first_event_since(db: Database, since: float) -> int:
    """The smallest event id received at or after ``since`` (bisecting ids: O(log n))."""
    row = await db.fetchone("SELECT MIN(id), MAX(id) FROM events")
    if row is None or row[0] is None:
        return 0
    lo, hi = row[0], row[1] + 1
    while lo < hi:
        mid = (lo + hi) // 2
        found = await db.fetchone(
            "SELECT id, received_at FROM events WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
        )
        if found is None or found[1] >= since:
            hi = mid
        else:
            lo = found[0] + 1
    return lo


# --- overview -----------------------------------------------------------------------------


@dataclass
class AdapterSummary:
    name: str
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    oldest_pending: float | None = None  # created_at of the oldest pending job
    next_due: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    last_error_status: str | None = None


async def adapter_summaries(db: Database, names: Iterable[str]) -> list[AdapterSummary]:
    out = {n: AdapterSummary(n) for n in names}
    for adapter, by_status in (await Outbox(db).counts()).items():
        out.setdefault(adapter, AdapterSummary(adapter)).counts.update(by_status)
    for name, summary in out.items():
        row = await db.fetchone(
            "SELECT MIN(created_at), MIN(due_at) FROM jobs WHERE status = 'pending'"
            " AND adapter = ?",
            (name,),
        )
        if row is not None:
            summary.oldest_pending, summary.next_due = row[0], row[1]
        row = await db.fetchone(
            "SELECT MAX(updated_at) FROM jobs WHERE status = 'done' AND adapter = ?", (name,)
        )
        summary.last_success = None if row is None else row[0]
        row = await db.fetchone(
            "SELECT last_error, updated_at, status FROM jobs WHERE status IN"
            " ('pending', 'running', 'dead') AND adapter = ? AND last_error IS NOT NULL"
            " ORDER BY updated_at DESC LIMIT 1",
            (name,),
        )
        if row is not None:
            summary.last_error, summary.last_error_at, summary.last_error_status = row
    return list(out.values())


def _answered(dialog: Any) -> bool:
    try:
        return int(str(dialog or "0").strip() or 0) > 0
    except ValueError:
        return False


async def calls_per_hour(db: Database, start: float, hours: int = 24) -> list[tuple[int, int]]:
    """(answered, missed) per hour from ``start``; a call counts once, by its end event."""
    first = await first_event_since(db, start)
    rows = await db.fetchall(
        "SELECT domain, uuid, event, received_at, json_extract(payload, '$.dialog_duration')"
        " FROM events WHERE id >= ? AND event IN ('call_end', 'call_missed')",
        (first,),
    )
    calls: dict[tuple[str, str], tuple[float, bool]] = {}
    for domain, uuid, event, at, dialog in rows:
        answered = event == "call_end" and _answered(dialog)
        seen = calls.get((domain, uuid))
        calls[(domain, uuid)] = (
            min(at, seen[0]) if seen else at,
            answered or bool(seen and seen[1]),
        )
    buckets = [[0, 0] for _ in range(hours)]
    for at, answered in calls.values():
        i = int((at - start) // 3600)
        if 0 <= i < hours:
            buckets[i][0 if answered else 1] += 1
    return [(a, m) for a, m in buckets]


async def latency_per_hour(db: Database, start: float, hours: int = 24) -> list[list[float]]:
    """Delivery latencies (seconds from arrival to done) of the jobs finished in each hour."""
    rows = await db.fetchall(
        "SELECT updated_at, updated_at - created_at FROM jobs"
        " WHERE status = 'done' AND updated_at >= ?",
        (start,),
    )
    buckets: list[list[float]] = [[] for _ in range(hours)]
    for at, latency in rows:
        i = int((at - start) // 3600)
        if 0 <= i < hours:
            buckets[i].append(max(0.0, latency))
    return buckets


# --- calls --------------------------------------------------------------------------------


@dataclass
class CallRow:
    domain: str
    uuid: str
    first_at: float
    events: list[str]
    fields: dict[str, str]
    event_ids: list[int]
    jobs: dict[str, int] = field(default_factory=dict)  # status → count

    @property
    def state(self) -> str:
        if "call_end" in self.events:
            return "answered" if _answered(self.fields.get("dialog_duration")) else "missed"
        return "missed" if "call_missed" in self.events else "in_progress"


def _number_matches(fields: dict[str, Any], tail: str) -> bool:
    for key in ("caller", "callee", "gateway", "from", "to", "phone"):
        digits = "".join(ch for ch in str(fields.get(key) or "") if ch.isdigit())
        if tail and tail in digits:
            return True
    return False


async def search_calls(
    db: Database,
    *,
    number_tail: str | None = None,
    uuid: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 50,
) -> list[CallRow]:
    """Recent calls, newest first, by a number's digits, a uuid, and/or a time range."""
    conditions: list[tuple[str, tuple[Any, ...]]] = []
    if since is not None:
        conditions.append(("id >= ?", (await first_event_since(db, since),)))
    if until is not None:
        conditions.append(("id < ?", (await first_event_since(db, until),)))
    if uuid and number_tail:
        conditions.append(("(uuid = ? OR instr(payload, ?) > 0)", (uuid, number_tail)))
    elif uuid:
        conditions.append(("uuid = ?", (uuid,)))
    elif number_tail:
        conditions.append(("instr(payload, ?) > 0", (number_tail,)))
    clause = ("WHERE " + " AND ".join(c for c, _ in conditions)) if conditions else ""
    params = [value for _, values in conditions for value in values]
    rows = await db.fetchall(
        f"SELECT id, domain, uuid, event, payload, received_at FROM events {clause}"
        " ORDER BY id DESC LIMIT ?",
        (*params, SEARCH_SCAN),
    )
    calls: dict[tuple[str, str], CallRow] = {}
    for event_id, domain, call_uuid, event, payload, at in rows:
        fields = json.loads(payload)
        if number_tail and call_uuid != uuid and not _number_matches(fields, number_tail):
            continue  # the digits were elsewhere in the body (a date, the uuid)
        row = calls.get((domain, call_uuid))
        if row is None:
            if len(calls) >= limit:
                continue
            row = calls[(domain, call_uuid)] = CallRow(domain, call_uuid, at, [], {}, [])
        row.events.append(event)
        row.event_ids.append(event_id)
        row.first_at = min(row.first_at, at)
        row.fields = {**fields, **row.fields} if event not in TERMINAL else {**row.fields, **fields}
    found = list(calls.values())
    ids = [i for c in found for i in c.event_ids]
    if ids:
        by_event: dict[int, CallRow] = {i: c for c in found for i in c.event_ids}
        for event_id, status, n in await db.fetchall(
            "SELECT event_id, status, COUNT(*) FROM jobs WHERE event_id IN"
            f" ({','.join('?' * len(ids))}) GROUP BY event_id, status",
            ids,
        ):
            jobs = by_event[event_id].jobs
            jobs[status] = jobs.get(status, 0) + n
    return found


@dataclass
class CallDetail:
    domain: str
    uuid: str
    events: list[dict[str, Any]]
    jobs: list[Job]
    crm_ids: list[dict[str, Any]]


async def call_detail(db: Database, uuid: str, domain: str | None = None) -> CallDetail | None:
    if domain is None:
        row = await db.fetchone("SELECT domain FROM events WHERE uuid = ? LIMIT 1", (uuid,))
        if row is None:
            return None
        domain = row[0]
    events = [
        {**dict(r), "payload": json.loads(r["payload"])}
        for r in await db.fetchall(
            "SELECT id, event, payload, received_at, recovered FROM events"
            " WHERE domain = ? AND uuid = ? ORDER BY id",
            (domain, uuid),
        )
    ]
    if not events:
        return None
    ids = [e["id"] for e in events]
    jobs = [
        await Outbox(db).get(r[0])
        for r in await db.fetchall(
            f"SELECT id FROM jobs WHERE event_id IN ({','.join('?' * len(ids))})"
            " ORDER BY adapter, id",
            ids,
        )
    ]
    crm = await db.fetchall(
        "SELECT adapter, name, value, created_at FROM crm_objects WHERE call_key = ?"
        " ORDER BY adapter, created_at",
        (f"{domain}/{uuid}",),
    )
    return CallDetail(domain, uuid, events, [j for j in jobs if j], [dict(r) for r in crm])


async def live_calls(db: Database, now: float) -> list[dict[str, Any]]:
    """Calls that started within LIVE_WINDOW and have no end event yet."""
    first = await first_event_since(db, now - LIVE_WINDOW)
    rows = await db.fetchall(
        "SELECT domain, uuid, event, payload, received_at FROM events WHERE id >= ? ORDER BY id",
        (first,),
    )
    calls: dict[tuple[str, str], dict[str, Any]] = {}
    for domain, uuid, event, payload, at in rows:
        if event in TERMINAL:
            calls.pop((domain, uuid), None)
            calls[(domain, uuid)] = {"ended": True}
            continue
        seen = calls.get((domain, uuid))
        if seen and seen.get("ended"):
            continue
        fields = json.loads(payload)
        call = seen or {"domain": domain, "uuid": uuid, "since": at}
        call.update(
            state=event,
            direction=fields.get("direction", call.get("direction", "")),
            caller=fields.get("caller", call.get("caller", "")),
            callee=fields.get("callee", call.get("callee", "")),
        )
        calls[(domain, uuid)] = call
    return [c for c in calls.values() if not c.get("ended")]


# --- outbox -------------------------------------------------------------------------------


async def jobs(db: Database, status: str, adapter: str | None, limit: int = 100) -> list[Job]:
    found = await Outbox(db).list(status=status, adapter=adapter, limit=limit)
    if status == PENDING:
        found.sort(key=lambda j: (j.due_at, j.id))
    return found


async def get_job(db: Database, job_id: int) -> Job | None:
    return await Outbox(db).get(job_id)


async def retry_job(db: Database, job_id: int, now: float) -> int:
    return await Outbox(db, lambda: now).retry_dead([job_id])


async def retry_adapter(db: Database, adapter: str, now: float) -> int:
    rows = await db.fetchall(
        "SELECT id FROM jobs WHERE status = ? AND adapter = ?", (DEAD, adapter)
    )
    if not rows:
        return 0
    return await Outbox(db, lambda: now).retry_dead([r[0] for r in rows])


# --- alerts -------------------------------------------------------------------------------


async def dead_since(db: Database, since: float) -> dict[str, tuple[int, str]]:
    """Per adapter: jobs that went dead after ``since``, with the latest reason."""
    out: dict[str, tuple[int, str]] = {}
    rows = await db.fetchall(
        "SELECT adapter, last_error FROM jobs WHERE status = 'dead' AND updated_at > ?"
        " ORDER BY updated_at",
        (since,),
    )
    counts: dict[str, int] = defaultdict(int)
    for adapter, reason in rows:
        counts[adapter] += 1
        out[adapter] = (counts[adapter], reason or "")
    return out


async def oldest_pending(db: Database) -> dict[str, float]:
    rows = await db.fetchall(
        "SELECT adapter, MIN(created_at) FROM jobs WHERE status = 'pending' GROUP BY adapter"
    )
    return {r[0]: r[1] for r in rows}


async def recovered_after(db: Database, after_id: int) -> tuple[int, int]:
    """(how many events the sweep recovered with id > after_id, the largest event id)."""
    row = await db.fetchone(
        "SELECT COUNT(*) FILTER (WHERE recovered = 1), MAX(id) FROM events WHERE id > ?",
        (after_id,),
    )
    if row is None or row[1] is None:
        return 0, after_id
    return row[0], row[1]


async def last_event_id(db: Database) -> int:
    row = await db.fetchone("SELECT MAX(id) FROM events")
    return 0 if row is None or row[0] is None else row[0]
