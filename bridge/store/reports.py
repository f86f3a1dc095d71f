"""The reports port: what the admin console and the alerts ask of the data, on both backends.

The console needs questions the delivery path never asks (counts per adapter, hourly
buckets, searches) and a little storage of its own (migration 3): the capped table of refused
webhooks, hourly intake counters, the search index of numbers and uuids, and revoked console
sessions. Every question is written once here, as a coroutine over a tiny query interface
(:class:`Q`: ``all``/``one``/``val``/``run``/``many`` with ``?`` placeholders);
``reports_sqlite.py`` and ``reports_postgres.py`` only say how a ``Q`` talks to their database.
On SQLite a whole page's questions run as one function on the console's own read connection
(one thread hop per page: the coroutine never really suspends there, see
``reports_sqlite.drive``); on PostgreSQL on one pooled connection.

Costs with 100,000 calls stored (bench/console.py): time-bounded questions first find the
first event id of the window by bisecting ``events.id`` (ids grow with arrival time, as
retention also relies on), so the last 24 hours never scan the whole table; searches by
number or uuid are lookups in ``admin_call_index``, which a background task fills (one
replica at a time: the ``admin-index`` lead).
"""

from __future__ import annotations

import json
import statistics
import weakref
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.store.outbox import PENDING, STATUSES, Job
from bridge.store.tables import JOB_COLUMNS

if TYPE_CHECKING:
    from bridge.store.ports import Storage

T = TypeVar("T")

REJECTED_CAP = 1000  # rows kept in rejected_webhooks; older ones are deleted
TERMINAL = ("call_end", "call_missed")
LIVE_WINDOW = 3 * 3600.0  # a call with no end event after this long is not shown as live
SEARCH_SCAN = 2000  # matching events looked at per search page (then grouped into calls)
PHONE_FIELDS = ("caller", "callee", "from", "to", "phone")
MIN_INDEXED_DIGITS = 7  # shorter values are extensions, not numbers worth indexing
INDEX_META = "admin_indexed_through"  # meta row: the last event id in admin_call_index
INDEX_CHUNK = 2000  # events per indexing transaction (a few ms of write lock)
INDEX_LEAD = "admin-index"  # one replica fills the index at a time
CHUNK = 500  # values per IN list (SQLite's variable limit)


class Q(ABC):
    """One connection's questions, ``?`` placeholders; rows index by position and name."""

    dialect: str
    least: str  # the two-argument MIN and MAX: MIN/MAX on SQLite, LEAST/GREATEST elsewhere
    greatest: str

    @abstractmethod
    async def all(self, sql: str, *args: Any) -> list[Any]: ...

    async def one(self, sql: str, *args: Any) -> Any | None:
        rows = await self.all(sql, *args)
        return rows[0] if rows else None

    async def val(self, sql: str, *args: Any) -> Any:
        row = await self.one(sql, *args)
        return None if row is None else row[0]

    @abstractmethod
    async def run(self, sql: str, *args: Any) -> int:
        """Execute a write; how many rows it touched."""

    @abstractmethod
    async def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def in_list(self, values: Sequence[Any]) -> tuple[str, list[Any]]:
        """``IN (?, ?…)`` (SQLite) or ``= ANY(?)`` (PostgreSQL) and its arguments."""

    @abstractmethod
    def hour_of(self, column: str) -> str:
        """The whole hours from the next ``?`` to ``column`` (never negative here)."""

    @abstractmethod
    def contains(self, column: str) -> str:
        """A condition: ``column`` contains the text of the next ``?``."""


Ask = Callable[[Q], Awaitable[T]]


# --- what the pages get ---------------------------------------------------------------------


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


@dataclass
class Overview:
    summaries: list[AdapterSummary]
    calls_per_hour: list[tuple[int, int]]
    latency_per_hour: list[tuple[float | None, float | None]]  # (median, max) seconds
    intake: dict[str, int]


def answered(dialog: Any) -> bool:
    try:
        return int(str(dialog or "0").strip() or 0) > 0
    except ValueError:
        return False


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
            return "answered" if answered(self.fields.get("dialog_duration")) else "missed"
        return "missed" if "call_missed" in self.events else "in_progress"


@dataclass
class CallDetail:
    domain: str
    uuid: str
    events: list[dict[str, Any]]
    jobs: list[Job]
    crm_ids: list[dict[str, Any]]


def index_keys(uuid: str, fields: dict[str, Any]) -> set[str]:
    """The search index keys of one event: its uuid and the last 10 digits of its numbers."""
    keys = {f"u:{uuid}"}
    for name in PHONE_FIELDS:
        digits = "".join(ch for ch in str(fields.get(name) or "") if ch.isdigit())
        if len(digits) >= MIN_INDEXED_DIGITS:
            keys.add(f"p:{digits[-10:]}")
    return keys


def _number_matches(fields: dict[str, Any], tail: str) -> bool:
    for key in PHONE_FIELDS:
        digits = "".join(ch for ch in str(fields.get(key) or "") if ch.isdigit())
        if tail and tail in digits:
            return True
    return False


# --- the questions, once for both backends ----------------------------------------------------


async def first_event_since(q: Q, since: float) -> int:
    """The smallest event id received at or after ``since`` (bisecting ids: O(log n))."""
    # Two statements: SQLite answers a lone MIN(id) or MAX(id) from the index, but both in
    # one SELECT scan the whole table (143 ms with 200,000 events).
    first = await q.val("SELECT MIN(id) FROM events")
    if first is None:
        return 0
    lo, hi = first, await q.val("SELECT MAX(id) FROM events") + 1
    while lo < hi:
        mid = (lo + hi) // 2
        found = await q.one(
            "SELECT id, received_at FROM events WHERE id >= ? ORDER BY id LIMIT 1", mid
        )
        if found is None or found[1] >= since:
            hi = mid
        else:
            lo = found[0] + 1
    return lo


async def _summaries(q: Q, names: list[str], done: list[Any]) -> list[AdapterSummary]:
    """Per adapter: delivered in the window (``done``: its done jobs), and every pending,
    running and dead job.

    Counting every done job ever would step through the whole jobs table (50-80 ms per
    100,000 jobs on a loaded machine); the window and the unfinished jobs are index ranges
    (the jobs_status and jobs_pending indexes).
    """
    out = {n: AdapterSummary(n) for n in names}
    # One pass over the unfinished jobs (jobs_status): counts, and the oldest and the next
    # due of the pending ones.
    for adapter, status, n, oldest, due in await q.all(
        "SELECT adapter, status, COUNT(*), MIN(created_at), MIN(due_at) FROM jobs"
        " WHERE status IN ('pending', 'running', 'dead') GROUP BY adapter, status"
    ):
        summary = out.setdefault(adapter, AdapterSummary(adapter))
        summary.counts[status] = n
        if status == PENDING:
            summary.oldest_pending, summary.next_due = oldest, due
    for adapter, at, _created in done:
        summary = out.setdefault(adapter, AdapterSummary(adapter))
        summary.counts["done"] += 1
        summary.last_success = max(at, summary.last_success or at)
    for name, summary in out.items():
        if summary.last_success is None:
            # Nothing in the window: newest first along jobs_status, a scan from the newest
            # done job that stops at this adapter's first.
            summary.last_success = await q.val(
                "SELECT updated_at FROM jobs WHERE status = 'done' AND adapter = ?"
                " ORDER BY updated_at DESC LIMIT 1",
                name,
            )
        row = await q.one(
            "SELECT last_error, updated_at, status FROM jobs WHERE status IN"
            " ('pending', 'running', 'dead') AND adapter = ? AND last_error IS NOT NULL"
            " ORDER BY updated_at DESC LIMIT 1",
            name,
        )
        if row is not None:
            summary.last_error, summary.last_error_at, summary.last_error_status = row
    return list(out.values())


def _ended(event: str, fields: dict[str, Any]) -> bool:
    """An end event counts its call answered when it reports talk time."""
    return event == "call_end" and answered(fields.get("dialog_duration"))


async def _calls_per_hour(q: Q, start: float, hours: int) -> list[tuple[int, int]]:
    """(answered, missed) per hour; a call counts once (a missed call may send call_missed
    and call_end), at its first end event, answered when a call_end has talk time.

    Counted in the database from ``admin_calls`` (one row per ended call, kept by the
    indexer: an index range of ~3,000 rows a day, no JSON), plus the few newest end events
    the indexer has not reached.
    """
    buckets = [[0, 0] for _ in range(hours)]

    def count(at: float, talked: Any, n: int) -> None:
        i = int((at - start) // 3600)
        if 0 <= i < hours:
            buckets[i][0 if talked else 1] += n

    for hour, talked, n in await q.all(
        f"SELECT {q.hour_of('ended_at')} AS h, answered, COUNT(*) FROM admin_calls"
        " WHERE ended_at >= ? GROUP BY h, answered",
        start,
        start,
    ):
        if 0 <= hour < hours:
            buckets[hour][0 if talked else 1] += n
    indexed = int(await q.val("SELECT value FROM meta WHERE key = ?", INDEX_META) or 0)
    newest = int(await q.val("SELECT MAX(id) FROM events") or 0)
    tail_from = indexed + 1
    if newest - indexed > INDEX_CHUNK:  # the indexer is far behind (a first start)
        tail_from = max(tail_from, await first_event_since(q, start))
    calls: dict[tuple[str, str], tuple[float, bool]] = {}
    for domain, uuid, event, at, payload in await q.all(
        "SELECT domain, uuid, event, received_at, payload FROM events"
        " WHERE id >= ? AND event IN ('call_end', 'call_missed')",
        tail_from,
    ):
        talked = _ended(event, json.loads(payload))
        seen = calls.get((domain, uuid))
        calls[(domain, uuid)] = (min(at, seen[0]), talked or seen[1]) if seen else (at, talked)
    uuids = sorted({uuid for _, uuid in calls})
    for i in range(0, len(uuids), CHUNK):  # calls with an end event on both sides
        where, args = q.in_list(uuids[i : i + CHUNK])
        for domain, uuid, at, talked in await q.all(
            f"SELECT domain, uuid, ended_at, answered FROM admin_calls WHERE uuid {where}", *args
        ):
            if (domain, uuid) in calls:
                count(at, talked, -1)
                seen = calls[(domain, uuid)]
                calls[(domain, uuid)] = (min(at, seen[0]), bool(talked) or seen[1])
    for at, talked in calls.values():
        count(at, talked, 1)
    return [(a, m) for a, m in buckets]


def _latency_per_hour(
    done: list[Any], start: float, hours: int
) -> list[tuple[float | None, float | None]]:
    """(median, max) delivery latency per hour of delivery. (Picking the middle rows with
    window functions in SQL measured slower than this loop: 17 ms against 3.)"""
    buckets: list[list[float]] = [[] for _ in range(hours)]
    for _adapter, at, created in done:
        i = int((at - start) // 3600)
        if 0 <= i < hours:
            buckets[i].append(max(0.0, at - created))
    return [(statistics.median(b), max(b)) if b else (None, None) for b in buckets]


async def _overview(q: Q, names: list[str], start: float, hours: int) -> Overview:
    intake = await q.all(
        "SELECT outcome, SUM(n) FROM intake_hourly WHERE hour >= ? GROUP BY outcome",
        int(start // 3600),
    )
    # The window's done jobs, read once for the delivered counts, the last success and the
    # latency chart (an index range of jobs_status).
    done = await q.all(
        "SELECT adapter, updated_at, created_at FROM jobs WHERE status = 'done'"
        " AND updated_at >= ?",
        start,
    )
    return Overview(
        await _summaries(q, names, done),
        await _calls_per_hour(q, start, hours),
        _latency_per_hour(done, start, hours),
        {r[0]: int(r[1]) for r in intake},
    )


async def _matching_ids(
    q: Q, low: int, high: int | None, tail: str | None, uuid: str | None
) -> list[int] | None:
    """Event ids matching a number or a uuid, newest first (None: no such filter).

    Indexed events are found by key; the newest events the indexer has not reached yet (and
    any partial number, which the index cannot answer) by scanning.
    """
    if not tail and not uuid:
        return None
    indexed = int(await q.val("SELECT value FROM meta WHERE key = ?", INDEX_META) or 0)
    keys = [f"u:{uuid}"] if uuid else []
    exact = tail is not None and len(tail) == 10
    if exact:
        keys.append(f"p:{tail}")
    ids: set[int] = set()
    if keys:
        where, args = q.in_list(keys)
        ids.update(
            r[0]
            for r in await q.all(
                f"SELECT event_id FROM admin_call_index WHERE key {where} AND event_id >= ?",
                *args,
                low,
            )
        )
    scan_from = max(low, indexed + 1) if (exact or not tail) else low
    conditions = ["uuid = ?"] if uuid else []
    conditions += [q.contains("payload")] if tail else []
    ids.update(
        r[0]
        for r in await q.all(
            f"SELECT id FROM events WHERE id >= ? AND ({' OR '.join(conditions)})"
            " ORDER BY id DESC LIMIT ?",
            scan_from,
            *([uuid] if uuid else []),
            *([tail] if tail else []),
            SEARCH_SCAN,
        )
    )
    return sorted((i for i in ids if high is None or i < high), reverse=True)[:SEARCH_SCAN]


async def _search(
    q: Q,
    number_tail: str | None,
    uuid: str | None,
    since: float | None,
    until: float | None,
    limit: int,
) -> list[CallRow]:
    low = await first_event_since(q, since) if since is not None else 0
    high = await first_event_since(q, until) if until is not None else None
    ids = await _matching_ids(q, low, high, number_tail, uuid)
    columns = "id, domain, uuid, event, payload, received_at"
    if ids is None:
        rows = await q.all(
            f"SELECT {columns} FROM events WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT ?",
            low,
            high if high is not None else 2**62,
            limit * 4,
        )
    else:
        rows = []
        for i in range(0, len(ids), CHUNK):
            where, args = q.in_list(ids[i : i + CHUNK])
            rows += await q.all(
                f"SELECT {columns} FROM events WHERE id {where} ORDER BY id DESC", *args
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
    by_event: dict[int, CallRow] = {i: c for c in found for i in c.event_ids}
    if by_event:
        where, args = q.in_list(list(by_event))
        for event_id, status, n in await q.all(
            f"SELECT event_id, status, COUNT(*) FROM jobs WHERE event_id {where}"
            " GROUP BY event_id, status",
            *args,
        ):
            jobs = by_event[event_id].jobs
            jobs[status] = jobs.get(status, 0) + n
    return found


async def _detail(q: Q, uuid: str, domain: str | None) -> CallDetail | None:
    if domain is None:
        domain = await q.val(
            "SELECT e.domain FROM admin_call_index i JOIN events e ON e.id = i.event_id"
            " WHERE i.key = ? LIMIT 1",
            f"u:{uuid}",
        )
        if domain is None:
            domain = await q.val(
                "SELECT domain FROM events WHERE uuid = ? ORDER BY id DESC LIMIT 1", uuid
            )
        if domain is None:
            return None
    events = [
        {**dict(r), "payload": json.loads(r["payload"])}
        for r in await q.all(
            "SELECT id, event, payload, received_at, recovered FROM events"
            " WHERE domain = ? AND uuid = ? ORDER BY id",
            domain,
            uuid,
        )
    ]
    if not events:
        return None
    where, args = q.in_list([e["id"] for e in events])
    jobs = [
        Job.from_row(r)
        for r in await q.all(
            f"SELECT {JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id"
            f" WHERE j.event_id {where} ORDER BY j.adapter, j.id",
            *args,
        )
    ]
    crm = await q.all(
        "SELECT adapter, name, value, created_at FROM crm_objects WHERE call_key = ?"
        " ORDER BY adapter, created_at",
        f"{domain}/{uuid}",
    )
    return CallDetail(domain, uuid, events, jobs, [dict(r) for r in crm])


async def _live(q: Q, now: float) -> list[dict[str, Any]]:
    calls: dict[tuple[str, str], dict[str, Any]] = {}
    ended: set[tuple[str, str]] = set()
    for domain, uuid, event, payload, at in await q.all(
        "SELECT domain, uuid, event, payload, received_at FROM events WHERE id >= ? ORDER BY id",
        await first_event_since(q, now - LIVE_WINDOW),
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


async def _jobs(q: Q, status: str, adapter: str | None, limit: int) -> list[Job]:
    # Pending: the soonest due first (the jobs_pending index); others: the latest changed
    # first (jobs_status: status, updated_at). The page's ids are chosen on the jobs rows
    # alone and only those joined with their events (sorting joined rows carried every
    # payload through the sort: 14 of 16 ms for the pending page).
    order = "due_at, id" if status == PENDING else "updated_at DESC, id DESC"
    rows = await q.all(
        f"SELECT {JOB_COLUMNS} FROM (SELECT id FROM jobs WHERE status = ?"
        f"{' AND adapter = ?' if adapter else ''} ORDER BY {order} LIMIT ?) AS page"
        f" JOIN jobs j ON j.id = page.id JOIN events e ON e.id = j.event_id"
        f" ORDER BY {', '.join('j.' + part for part in order.split(', '))}",
        status,
        *([adapter] if adapter else []),
        limit,
    )
    return [Job.from_row(r) for r in rows]


async def _save_intake(
    q: Q, counts: dict[tuple[int, str], int], rejected: list[tuple[Any, ...]]
) -> None:
    if counts:
        await q.many(
            "INSERT INTO intake_hourly (hour, outcome, n) VALUES (?, ?, ?)"
            " ON CONFLICT (hour, outcome) DO UPDATE SET n = intake_hourly.n + excluded.n",
            [(hour, outcome, n) for (hour, outcome), n in counts.items()],
        )
    if rejected:
        await q.many(
            "INSERT INTO rejected_webhooks (at, sender, status, reason, detail)"
            " VALUES (?, ?, ?, ?, ?)",
            rejected,
        )
        await q.run(
            "DELETE FROM rejected_webhooks WHERE id <= (SELECT MAX(id) FROM rejected_webhooks) - ?",
            REJECTED_CAP,
        )


async def _index_some(q: Q, chunk: int) -> int:
    after = int(await q.val("SELECT value FROM meta WHERE key = ?", INDEX_META) or 0)
    found = await q.all(
        "SELECT id, uuid, payload, domain, event, received_at FROM events WHERE id > ?"
        " ORDER BY id LIMIT ?",
        after,
        chunk,
    )
    if not found:
        return 0
    keys, ended = [], []
    for event_id, uuid, payload, domain, event, at in found:
        fields = json.loads(payload)
        keys += [(key, event_id) for key in index_keys(uuid, fields)]
        if event in TERMINAL:
            ended.append((domain, uuid, at, int(_ended(event, fields))))
    await q.many(
        "INSERT INTO admin_call_index (key, event_id) VALUES (?, ?) ON CONFLICT DO NOTHING", keys
    )
    if ended:
        # Idempotent and order-free (the first end, any answer), so a chunk indexed twice —
        # two replicas racing after a lead moved — changes nothing.
        await q.many(
            "INSERT INTO admin_calls (domain, uuid, ended_at, answered) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (domain, uuid) DO UPDATE SET"
            f" ended_at = {q.least}(admin_calls.ended_at, excluded.ended_at),"
            f" answered = {q.greatest}(admin_calls.answered, excluded.answered)",
            ended,
        )
    await q.run(
        "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
        " SET value = excluded.value"
        " WHERE CAST(meta.value AS BIGINT) < CAST(excluded.value AS BIGINT)",
        INDEX_META,
        str(found[-1][0]),
    )
    return len(found)


async def _prune_index(q: Q, chunk: int) -> int:
    first = await q.one("SELECT id, received_at FROM events ORDER BY id LIMIT 1")
    if first is None:
        first = (await q.val("SELECT COALESCE(MAX(event_id), 0) + 1 FROM admin_call_index"), None)
    dropped = await q.run(
        "DELETE FROM admin_call_index WHERE (key, event_id) IN (SELECT key, event_id"
        " FROM admin_call_index WHERE event_id < ? LIMIT ?)",
        first[0],
        chunk,
    )
    # Calls that ended before the oldest event left: retention took their events.
    return dropped + await q.run(
        "DELETE FROM admin_calls WHERE (domain, uuid) IN (SELECT domain, uuid FROM admin_calls"
        " WHERE ended_at < ? LIMIT ?)",
        first[1] if first[1] is not None else float("inf"),
        chunk,
    )


async def _revoke(q: Q, nonce: str, until: float, now: float) -> None:
    await q.run(
        "INSERT INTO admin_revoked (nonce, until) VALUES (?, ?)"
        " ON CONFLICT (nonce) DO UPDATE SET until = excluded.until",
        nonce,
        until,
    )
    await q.run("DELETE FROM admin_revoked WHERE until < ?", now)


async def _dead_since(q: Q, since: float) -> dict[str, tuple[int, str]]:
    out: dict[str, tuple[int, str]] = {}
    counts: dict[str, int] = defaultdict(int)
    for adapter, reason in await q.all(
        "SELECT adapter, last_error FROM jobs WHERE status = 'dead' AND updated_at > ?"
        " ORDER BY updated_at",
        since,
    ):
        counts[adapter] += 1
        out[adapter] = (counts[adapter], reason or "")
    return out


async def _recovered_after(q: Q, after_id: int) -> tuple[int, int]:
    row = await q.one(
        "SELECT COUNT(*) FILTER (WHERE recovered = 1), MAX(id) FROM events WHERE id > ?",
        after_id,
    )
    if row is None or row[1] is None:
        return 0, after_id
    return int(row[0]), int(row[1])


# --- the port ---------------------------------------------------------------------------------


class Reports(ABC):
    """The console's and the alerts' reads and writes on one storage."""

    @abstractmethod
    async def _read(self, job: Ask[T]) -> T:
        """Run ``job`` on a read connection (one page's questions together)."""

    @abstractmethod
    async def _write(self, job: Ask[T]) -> T:
        """Run ``job`` in one committed transaction."""

    async def close(self) -> None:
        return

    # intake and refused webhooks (written by bridge.admin.intake)

    async def save_intake(
        self, counts: dict[tuple[int, str], int], rejected: list[tuple[Any, ...]]
    ) -> None:
        """Add hourly counters and refused requests; keep only the newest REJECTED_CAP."""
        await self._write(lambda q: _save_intake(q, counts, rejected))

    async def rejected(self, limit: int = 200) -> list[dict[str, Any]]:
        rows = await self._read(
            lambda q: q.all(
                "SELECT at, sender, status, reason, detail FROM rejected_webhooks"
                " ORDER BY id DESC LIMIT ?",
                limit,
            )
        )
        return [dict(r) for r in rows]

    # the search index

    async def index_calls(self, chunk: int = INDEX_CHUNK) -> int:
        """Index the next ``chunk`` events (numbers and uuid → event id); how many."""
        return await self._write(lambda q: _index_some(q, chunk))

    async def prune_index(self, chunk: int = INDEX_CHUNK) -> int:
        """Drop index entries of events retention has deleted (older than the oldest event);
        one short transaction per ``chunk`` rows. How many were dropped."""
        dropped = 0
        while True:
            n = await self._write(lambda q: _prune_index(q, chunk))
            dropped += n
            if n < chunk:
                return dropped

    # pages

    async def overview(self, names: Iterable[str], start: float, hours: int = 24) -> Overview:
        wanted = list(names)
        return await self._read(lambda q: _overview(q, wanted, start, hours))

    async def search_calls(
        self,
        *,
        number_tail: str | None = None,
        uuid: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 50,
    ) -> list[CallRow]:
        """Recent calls, newest first, by a number's digits, a uuid, and/or a time range."""
        return await self._read(lambda q: _search(q, number_tail, uuid, since, until, limit))

    async def call_detail(self, uuid: str, domain: str | None = None) -> CallDetail | None:
        return await self._read(lambda q: _detail(q, uuid, domain))

    async def live_calls(self, now: float) -> list[dict[str, Any]]:
        """Calls that started within LIVE_WINDOW and have no end event yet."""
        return await self._read(lambda q: _live(q, now))

    async def jobs(self, status: str, adapter: str | None = None, limit: int = 100) -> list[Job]:
        return await self._read(lambda q: _jobs(q, status, adapter, limit))

    async def dead_job_ids(self, adapter: str) -> list[int]:
        rows = await self._read(
            lambda q: q.all("SELECT id FROM jobs WHERE status = 'dead' AND adapter = ?", adapter)
        )
        return [r[0] for r in rows]

    # console sessions (logout holds across processes and replicas)

    async def revoke_session(self, nonce: str, until: float, now: float) -> None:
        await self._write(lambda q: _revoke(q, nonce, until, now))

    async def session_revoked(self, nonce: str) -> bool:
        found = await self._read(
            lambda q: q.val("SELECT 1 FROM admin_revoked WHERE nonce = ?", nonce)
        )
        return found is not None

    # alerts

    async def dead_since(self, since: float) -> dict[str, tuple[int, str]]:
        """Per adapter: jobs that went dead after ``since``, with the latest reason."""
        return await self._read(lambda q: _dead_since(q, since))

    async def oldest_pending(self) -> dict[str, float]:
        rows = await self._read(
            lambda q: q.all(
                "SELECT adapter, MIN(created_at) FROM jobs WHERE status = 'pending'"
                " GROUP BY adapter"
            )
        )
        return {r[0]: r[1] for r in rows}

    async def recovered_after(self, after_id: int) -> tuple[int, int]:
        """(how many events the sweep recovered with id > after_id, the largest event id)."""
        return await self._read(lambda q: _recovered_after(q, after_id))

    async def last_event_id(self) -> int:
        return int(await self._read(lambda q: q.val("SELECT MAX(id) FROM events")) or 0)


_REPORTS: weakref.WeakKeyDictionary[Storage, Reports] = weakref.WeakKeyDictionary()


def reports_for(storage: Storage) -> Reports:
    """The reports of ``storage`` (one per storage, opened on first use)."""
    found = _REPORTS.get(storage)
    if found is None:
        if storage.backend == "postgresql":
            from bridge.store.reports_postgres import PostgresReports

            found = PostgresReports(storage)  # type: ignore[arg-type]
        else:
            from bridge.store.reports_sqlite import SQLiteReports

            found = SQLiteReports(storage)  # type: ignore[arg-type]
        _REPORTS[storage] = found
    return found


async def close_reports(storage: Storage) -> None:
    found = _REPORTS.pop(storage, None)
    if found is not None:
        await found.close()
