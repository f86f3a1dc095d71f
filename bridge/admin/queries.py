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

import asyncio
import json
import sqlite3
from collections import defaultdict
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from bridge.store import Storage, StorageError
from bridge.store.db import Database, in_transaction
from bridge.store.outbox import DEAD, PENDING, STATUSES, Job, Outbox

REJECTED_CAP = 1000  # rows kept in rejected_webhooks; older ones are deleted
TERMINAL = ("call_end", "call_missed")
LIVE_WINDOW = 3 * 3600.0  # a call with no end event after this long is not shown as live
SEARCH_SCAN = 2000  # matching events looked at per search page (then grouped into calls)
PHONE_FIELDS = ("caller", "callee", "from", "to", "phone")
MIN_INDEXED_DIGITS = 7  # shorter values are extensions, not numbers worth indexing
INDEX_META = "admin_indexed_through"  # meta row: the last event id in admin_call_index
INDEX_CHUNK = 2000  # events per indexing transaction (a few ms of write lock)

SCHEMA = """
CREATE TABLE IF NOT EXISTS rejected_webhooks (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    sender  TEXT NOT NULL,
    status  INTEGER NOT NULL,
    reason  TEXT NOT NULL,
    detail  TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS admin_call_index (
    key      TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    PRIMARY KEY (key, event_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intake_hourly (
    hour    INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    n       INTEGER NOT NULL,
    PRIMARY KEY (hour, outcome)
);
"""


def _sql(storage: Storage) -> Database:
    """The SQLite connection the console's own queries still use (they move onto the storage
    ports with #16); on another backend the page says so instead of failing."""
    db = getattr(storage, "db", None)
    if not isinstance(db, Database):
        raise StorageError(f"the console's reports need SQLite for now ({storage.backend})")
    return db


T = TypeVar("T")
_READERS: dict[int, tuple[ThreadPoolExecutor, sqlite3.Connection]] = {}


async def read(db: Storage, fn: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``fn(connection)`` on the console's own read connection, in one thread hop.

    A page asks several questions; through aiosqlite each would cost a hop through a busy
    event loop. One function on one thread answers them all (WAL: readers never block the
    writer). Opened on first use; :func:`close_reader` closes it.
    """
    reader = _READERS.get(id(db))
    if reader is None:
        pool = ThreadPoolExecutor(1, thread_name_prefix="admin-reader")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(_sql(db).path, check_same_thread=False, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA query_only = ON")
            conn.execute("PRAGMA busy_timeout = 2000")
            return conn

        conn = await asyncio.get_running_loop().run_in_executor(pool, connect)
        reader = _READERS.setdefault(id(db), (pool, conn))
        if reader[1] is not conn:  # another page opened one meanwhile
            conn.close()
            pool.shutdown()
    pool, conn = reader
    try:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, conn)
    except sqlite3.Error as exc:
        raise StorageError(str(exc)) from exc


async def close_reader(db: Storage) -> None:
    reader = _READERS.pop(id(db), None)
    if reader is not None:
        pool, conn = reader
        await asyncio.get_running_loop().run_in_executor(pool, conn.close)
        pool.shutdown()


async def ensure_schema(db: Storage) -> None:
    def create(conn: sqlite3.Connection) -> None:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)

    await _sql(db).run(in_transaction(create))


# --- intake (written by bridge.admin.intake) ------------------------------------------------


async def save_intake(
    db: Storage, counts: dict[tuple[int, str], int], rejected: list[tuple[Any, ...]]
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

    await _sql(db).run(in_transaction(write))


async def rejected(db: Storage, limit: int = 200) -> list[dict[str, Any]]:
    rows = await read(
        db,
        lambda c: c.execute(
            "SELECT at, sender, status, reason, detail FROM rejected_webhooks"
            " ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall(),
    )
    return [dict(r) for r in rows]


# --- the search index -----------------------------------------------------------------------


def _keys(uuid: str, payload: str) -> set[str]:
    fields = json.loads(payload)
    keys = {f"u:{uuid}"}
    for name in PHONE_FIELDS:
        digits = "".join(ch for ch in str(fields.get(name) or "") if ch.isdigit())
        if len(digits) >= MIN_INDEXED_DIGITS:
            keys.add(f"p:{digits[-10:]}")
    return keys


def _index_some(conn: sqlite3.Connection, chunk: int) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEX_META,)).fetchone()
    after = int(row[0]) if row else 0
    found = conn.execute(
        "SELECT id, uuid, payload FROM events WHERE id > ? ORDER BY id LIMIT ?", (after, chunk)
    ).fetchall()
    if not found:
        return 0
    conn.executemany(
        "INSERT OR IGNORE INTO admin_call_index (key, event_id) VALUES (?, ?)",
        [(key, event_id) for event_id, uuid, payload in found for key in _keys(uuid, payload)],
    )
    conn.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (INDEX_META, str(found[-1][0]))
    )
    return len(found)


async def index_calls(db: Storage, chunk: int = INDEX_CHUNK) -> int:
    """Index the next ``chunk`` events (numbers and uuid → event id); how many were indexed.

    Runs in the background (bridge/admin/intake.py) in short write transactions, so a search
    is one index lookup plus a scan of only the few newest, not yet indexed events.
    """
    return await _sql(db).run(in_transaction(partial(_index_some, chunk=chunk)))


def _prune_index(conn: sqlite3.Connection, chunk: int) -> int:
    first = conn.execute("SELECT MIN(id) FROM events").fetchone()[0]
    if first is None:
        first = conn.execute(
            "SELECT COALESCE(MAX(event_id), 0) + 1 FROM admin_call_index"
        ).fetchone()[0]
    return conn.execute(
        "DELETE FROM admin_call_index WHERE (key, event_id) IN (SELECT key, event_id"
        " FROM admin_call_index WHERE event_id < ? LIMIT ?)",
        (first, chunk),
    ).rowcount


async def prune_index(db: Storage, chunk: int = INDEX_CHUNK) -> int:
    """Drop index entries of events retention has deleted (older than the oldest event);
    one short transaction per ``chunk`` rows. How many were dropped."""
    dropped = 0
    while True:
        n = await _sql(db).run(in_transaction(partial(_prune_index, chunk=chunk)))
        dropped += n
        if n < chunk:
            return dropped
        await asyncio.sleep(0)


# --- time windows -------------------------------------------------------------------------


def first_event_since(conn: sqlite3.Connection, since: float) -> int:
    """The smallest event id received at or after ``since`` (bisecting ids: O(log n))."""
    # Two statements: SQLite answers a lone MIN(id) or MAX(id) from the index, but both in
    # one SELECT scan the whole table (143 ms with 200,000 events).
    first = conn.execute("SELECT MIN(id) FROM events").fetchone()[0]
    if first is None:
        return 0
    lo, hi = first, conn.execute("SELECT MAX(id) FROM events").fetchone()[0] + 1
    while lo < hi:
        mid = (lo + hi) // 2
        found = conn.execute(
            "SELECT id, received_at FROM events WHERE id >= ? ORDER BY id LIMIT 1", (mid,)
        ).fetchone()
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


def _summaries(conn: sqlite3.Connection, names: list[str], since: float) -> list[AdapterSummary]:
    """Per adapter: delivered since ``since``, and every pending, running and dead job.

    Counting every done job ever would step through the whole jobs table (50-80 ms per
    100,000 jobs on a loaded machine); the recent window and the unfinished jobs are index
    ranges (the jobs_status and jobs_pending indexes).
    """
    out = {n: AdapterSummary(n) for n in names}
    for adapter, status, n in conn.execute(
        "SELECT adapter, status, COUNT(*) FROM jobs WHERE status IN ('running', 'dead')"
        " GROUP BY adapter, status UNION ALL"
        " SELECT adapter, 'pending', COUNT(*) FROM jobs WHERE status = 'pending' GROUP BY adapter"
        " UNION ALL SELECT adapter, 'done', COUNT(*) FROM jobs WHERE status = 'done'"
        " AND updated_at >= ? GROUP BY adapter",
        (since,),
    ):
        out.setdefault(adapter, AdapterSummary(adapter)).counts[status] = n
    for name, summary in out.items():
        summary.oldest_pending, summary.next_due = conn.execute(
            "SELECT MIN(created_at), MIN(due_at) FROM jobs WHERE status = 'pending'"
            " AND adapter = ?",
            (name,),
        ).fetchone()
        summary.last_success = conn.execute(
            "SELECT MAX(updated_at) FROM jobs WHERE status = 'done' AND adapter = ?", (name,)
        ).fetchone()[0]
        row = conn.execute(
            "SELECT last_error, updated_at, status FROM jobs WHERE status IN"
            " ('pending', 'running', 'dead') AND adapter = ? AND last_error IS NOT NULL"
            " ORDER BY updated_at DESC LIMIT 1",
            (name,),
        ).fetchone()
        if row is not None:
            summary.last_error, summary.last_error_at, summary.last_error_status = row
    return list(out.values())


@dataclass
class Overview:
    summaries: list[AdapterSummary]
    calls_per_hour: list[tuple[int, int]]
    latency_per_hour: list[list[float]]
    intake: dict[str, int]


async def overview(db: Storage, names: Iterable[str], start: float, hours: int = 24) -> Overview:
    """Everything the overview page shows, read in one hop."""

    def ask(conn: sqlite3.Connection) -> Overview:
        intake = conn.execute(
            "SELECT outcome, SUM(n) FROM intake_hourly WHERE hour >= ? GROUP BY outcome",
            (int(start // 3600),),
        ).fetchall()
        return Overview(
            _summaries(conn, list(names), start),
            _calls_per_hour(conn, start, hours),
            _latency_per_hour(conn, start, hours),
            {r[0]: r[1] for r in intake},
        )

    return await read(db, ask)


def _answered(dialog: Any) -> bool:
    try:
        return int(str(dialog or "0").strip() or 0) > 0
    except ValueError:
        return False


def _calls_per_hour(conn: sqlite3.Connection, start: float, hours: int) -> list[tuple[int, int]]:
    # One row per call (a missed call may send call_missed and call_end); answered when a
    # call_end has talk time. (A GROUP BY in SQL measured 4x slower than this loop.)
    rows = conn.execute(
        "SELECT domain, uuid, event, received_at, CASE WHEN event = 'call_end' THEN"
        " json_extract(payload, '$.dialog_duration') END"
        " FROM events WHERE id >= ? AND event IN ('call_end', 'call_missed')",
        (first_event_since(conn, start),),
    ).fetchall()
    calls: dict[tuple[str, str], tuple[float, bool]] = {}
    for domain, uuid, event, at, dialog in rows:
        answered = event == "call_end" and _answered(dialog)
        seen = calls.get((domain, uuid))
        if seen:
            at, answered = min(at, seen[0]), answered or seen[1]
        calls[(domain, uuid)] = (at, answered)
    buckets = [[0, 0] for _ in range(hours)]
    for at, answered in calls.values():
        i = int((at - start) // 3600)
        if 0 <= i < hours:
            buckets[i][0 if answered else 1] += 1
    return [(a, m) for a, m in buckets]  # (answered, missed) per hour; a call counts once


def _latency_per_hour(conn: sqlite3.Connection, start: float, hours: int) -> list[list[float]]:
    buckets: list[list[float]] = [[] for _ in range(hours)]
    for at, latency in conn.execute(
        "SELECT updated_at, updated_at - created_at FROM jobs"
        " WHERE status = 'done' AND updated_at >= ?",
        (start,),
    ):
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
    for key in PHONE_FIELDS:
        digits = "".join(ch for ch in str(fields.get(key) or "") if ch.isdigit())
        if tail and tail in digits:
            return True
    return False


def _matching_ids(
    conn: sqlite3.Connection, low: int, high: int | None, tail: str | None, uuid: str | None
) -> list[int] | None:
    """Event ids matching a number or a uuid, newest first (None: no such filter).

    Indexed events are found by key; the newest events the indexer has not reached yet (and
    any partial number, which the index cannot answer) by scanning.
    """
    if not tail and not uuid:
        return None
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (INDEX_META,)).fetchone()
    indexed = int(row[0]) if row else 0
    keys = [f"u:{uuid}"] if uuid else []
    exact = tail is not None and len(tail) == 10
    if exact:
        keys.append(f"p:{tail}")
    ids: set[int] = set()
    if keys:
        ids.update(
            r[0]
            for r in conn.execute(
                "SELECT event_id FROM admin_call_index WHERE key IN"
                f" ({','.join('?' * len(keys))}) AND event_id >= ?",
                (*keys, low),
            )
        )
    scan_from = max(low, indexed + 1) if (exact or not tail) else low
    conditions = ["uuid = ?"] if uuid else []
    conditions += ["instr(payload, ?) > 0"] if tail else []
    ids.update(
        r[0]
        for r in conn.execute(
            f"SELECT id FROM events WHERE id >= ? AND ({' OR '.join(conditions)})"
            " ORDER BY id DESC LIMIT ?",
            (scan_from, *([uuid] if uuid else []), *([tail] if tail else []), SEARCH_SCAN),
        )
    )
    return sorted((i for i in ids if high is None or i < high), reverse=True)[:SEARCH_SCAN]


def _search(
    conn: sqlite3.Connection,
    number_tail: str | None,
    uuid: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> list[CallRow]:
    low = first_event_since(conn, since) if since is not None else 0
    high = first_event_since(conn, until) if until is not None else None
    ids = _matching_ids(conn, low, high, number_tail, uuid)
    columns = "id, domain, uuid, event, payload, received_at"
    if ids is None:
        rows = conn.execute(
            f"SELECT {columns} FROM events WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT ?",
            (low, high if high is not None else 2**62, limit * 4),
        ).fetchall()
    else:
        rows = [
            r
            for chunk in range(0, len(ids), 500)
            for r in conn.execute(
                f"SELECT {columns} FROM events WHERE id IN"
                f" ({','.join('?' * len(ids[chunk : chunk + 500]))}) ORDER BY id DESC",
                ids[chunk : chunk + 500],
            )
        ]
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
    by_event: dict[int, CallRow] = {i: c for c in found for i in c.event_ids}
    if by_event:
        for event_id, status, n in conn.execute(
            "SELECT event_id, status, COUNT(*) FROM jobs WHERE event_id IN"
            f" ({','.join('?' * len(by_event))}) GROUP BY event_id, status",
            list(by_event),
        ):
            jobs = by_event[event_id].jobs
            jobs[status] = jobs.get(status, 0) + n
    return found


async def search_calls(
    db: Storage,
    *,
    number_tail: str | None = None,
    uuid: str | None = None,
    since: float | None = None,
    until: float | None = None,
    limit: int = 50,
) -> list[CallRow]:
    """Recent calls, newest first, by a number's digits, a uuid, and/or a time range."""
    search = partial(
        _search, number_tail=number_tail, uuid=uuid, since=since, until=until, limit=limit
    )
    return await read(db, search)


@dataclass
class CallDetail:
    domain: str
    uuid: str
    events: list[dict[str, Any]]
    jobs: list[Job]
    crm_ids: list[dict[str, Any]]


def _detail(
    conn: sqlite3.Connection, uuid: str, domain: str | None
) -> tuple[str, list[dict[str, Any]], list[int], list[dict[str, Any]]] | None:
    if domain is None:
        hit = (
            conn.execute(
                "SELECT e.domain FROM admin_call_index i JOIN events e ON e.id = i.event_id"
                " WHERE i.key = ? LIMIT 1",
                (f"u:{uuid}",),
            ).fetchone()
            or conn.execute(
                "SELECT domain FROM events WHERE uuid = ? ORDER BY id DESC LIMIT 1", (uuid,)
            ).fetchone()
        )
        if hit is None:
            return None
        domain = hit[0]
    events = [
        {**dict(r), "payload": json.loads(r["payload"])}
        for r in conn.execute(
            "SELECT id, event, payload, received_at, recovered FROM events"
            " WHERE domain = ? AND uuid = ? ORDER BY id",
            (domain, uuid),
        )
    ]
    if not events:
        return None
    ids = [e["id"] for e in events]
    job_ids = [
        r[0]
        for r in conn.execute(
            f"SELECT id FROM jobs WHERE event_id IN ({','.join('?' * len(ids))})"
            " ORDER BY adapter, id",
            ids,
        )
    ]
    crm = conn.execute(
        "SELECT adapter, name, value, created_at FROM crm_objects WHERE call_key = ?"
        " ORDER BY adapter, created_at",
        (f"{domain}/{uuid}",),
    ).fetchall()
    return domain, events, job_ids, [dict(r) for r in crm]


async def call_detail(db: Storage, uuid: str, domain: str | None = None) -> CallDetail | None:
    found = await read(db, partial(_detail, uuid=uuid, domain=domain))
    if found is None:
        return None
    domain, events, job_ids, crm = found
    jobs = [await Outbox(db).get(i) for i in job_ids]
    return CallDetail(domain, uuid, events, [j for j in jobs if j], crm)


def _live(conn: sqlite3.Connection, now: float) -> list[dict[str, Any]]:
    calls: dict[tuple[str, str], dict[str, Any]] = {}
    ended: set[tuple[str, str]] = set()
    for domain, uuid, event, payload, at in conn.execute(
        "SELECT domain, uuid, event, payload, received_at FROM events WHERE id >= ? ORDER BY id",
        (first_event_since(conn, now - LIVE_WINDOW),),
    ):
        key = (domain, uuid)
        if event in TERMINAL:
            ended.add(key)
            calls.pop(key, None)
            continue
        if key in ended:
            continue
        fields = json.loads(payload)
        call = calls.setdefault(key, {"domain": domain, "uuid": uuid, "since": at})
        call["state"] = event
        for name in ("direction", "caller", "callee"):
            call[name] = fields.get(name, call.get(name, ""))
    return list(calls.values())


async def live_calls(db: Storage, now: float) -> list[dict[str, Any]]:
    """Calls that started within LIVE_WINDOW and have no end event yet."""
    return await read(db, partial(_live, now=now))


# --- outbox -------------------------------------------------------------------------------


async def jobs(db: Storage, status: str, adapter: str | None, limit: int = 100) -> list[Job]:
    found = await Outbox(db).list(status=status, adapter=adapter, limit=limit)
    if status == PENDING:
        found.sort(key=lambda j: (j.due_at, j.id))
    return found


async def get_job(db: Storage, job_id: int) -> Job | None:
    return await Outbox(db).get(job_id)


async def retry_job(db: Storage, job_id: int, now: float) -> int:
    return await Outbox(db, lambda: now).retry_dead([job_id])


async def retry_adapter(db: Storage, adapter: str, now: float) -> int:
    rows = await _sql(db).fetchall(
        "SELECT id FROM jobs WHERE status = ? AND adapter = ?", (DEAD, adapter)
    )
    if not rows:
        return 0
    return await Outbox(db, lambda: now).retry_dead([r[0] for r in rows])


# --- alerts -------------------------------------------------------------------------------


async def dead_since(db: Storage, since: float) -> dict[str, tuple[int, str]]:
    """Per adapter: jobs that went dead after ``since``, with the latest reason."""
    out: dict[str, tuple[int, str]] = {}
    rows = await _sql(db).fetchall(
        "SELECT adapter, last_error FROM jobs WHERE status = 'dead' AND updated_at > ?"
        " ORDER BY updated_at",
        (since,),
    )
    counts: dict[str, int] = defaultdict(int)
    for adapter, reason in rows:
        counts[adapter] += 1
        out[adapter] = (counts[adapter], reason or "")
    return out


async def oldest_pending(db: Storage) -> dict[str, float]:
    rows = await _sql(db).fetchall(
        "SELECT adapter, MIN(created_at) FROM jobs WHERE status = 'pending' GROUP BY adapter"
    )
    return {r[0]: r[1] for r in rows}


async def recovered_after(db: Storage, after_id: int) -> tuple[int, int]:
    """(how many events the sweep recovered with id > after_id, the largest event id)."""
    row = await _sql(db).fetchone(
        "SELECT COUNT(*) FILTER (WHERE recovered = 1), MAX(id) FROM events WHERE id > ?",
        (after_id,),
    )
    if row is None or row[1] is None:
        return 0, after_id
    return row[0], row[1]


async def last_event_id(db: Storage) -> int:
    row = await _sql(db).fetchone("SELECT MAX(id) FROM events")
    return 0 if row is None or row[0] is None else row[0]
