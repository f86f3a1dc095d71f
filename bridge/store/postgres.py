"""The PostgreSQL backend (asyncpg): several replicas of the bridge on one database.

- Ingest: the event writer's group commit is one transaction here too (events and their
  jobs through ``unnest`` arrays, then ``pg_notify``); the webhook's 200 follows the commit.
- Claims: ``FOR UPDATE SKIP LOCKED`` picks due jobs no other replica is claiming at that
  instant; each claimed job gets a lease (``lease_owner``, ``lease_expires``) that its worker
  renews while the CRM call runs. Only expired leases are requeued.
- Wake-up: the ingest transaction ends with ``pg_notify``; every replica LISTENs on one
  connection and wakes the named adapters' workers (no polling lag across replicas).
- Once across replicas: leads (:meth:`try_lead`) are session advisory locks held on one
  dedicated connection, so a replica that dies (kill -9, lost network) loses its leads the
  moment PostgreSQL closes its session; :meth:`lock` is an advisory lock on a pooled
  connection for the duration of a block; :meth:`rate_slot` reserves send slots in one row
  per shared rate, on the database's clock.
- Outage: every failure to reach the server is a StorageError (webhooks answer 503,
  /readyz is red); the pool opens new connections when the server is back, and the listener
  and lead connections reconnect by themselves.

A ``search_path`` query parameter on the URL selects a schema (created if missing); lock keys
and the notification channel are derived from it, so bridges in different schemas of one
database never share a lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import structlog

from bridge.adapter.locks import DEFAULT_WAIT, LockTimeout
from bridge.store import migrations
from bridge.store.db import PROBE_PAYLOAD
from bridge.store.events import IncomingEvent, Stored
from bridge.store.outbox import CLOCK_SLACK, MAX_DUE_AHEAD, Job
from bridge.store.ports import PlannedJobs, Storage, StorageError, redact_url, url_schema
from bridge.store.state import call_key
from bridge.store.tables import (
    AHEAD,
    IN_TURN,
    IN_TURN_EACH,
    JOB_COLUMNS,
    LANES,
    LIVE_COLUMNS,
    LOCAL,
    by_adapter,
    live_listed,
    live_upsert,
    live_values,
)

log = structlog.get_logger("bridge.store")

POOL_SIZE = 10  # connections per replica: ingest, workers, reads and blocks holding a lock
ACQUIRE_TIMEOUT = 5.0  # seconds to wait for a pooled connection before answering 503
CONNECT_TIMEOUT = 5.0
COMMAND_TIMEOUT = 15.0  # a statement on a connection cut mid-way fails after this
RECONNECT_EVERY = 1.0  # listener / lead connection retries while the server is away
LEAD_CHECK_EVERY = 2.0  # a held lead's connection is proven alive at most this often

_DOWN = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def split_url(url: str) -> tuple[str, str]:
    """(the DSN asyncpg connects to, the schema named by ``search_path``, default public)."""
    try:
        schema = url_schema(url)
    except ValueError as exc:
        raise StorageError(str(exc)) from None
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    rest = urlencode([(k, v) for k, v in query if k != "search_path"])
    return urlunsplit(parts._replace(query=rest)), schema


def lock_key(schema: str, name: str) -> int:
    """A signed 64-bit advisory lock key for ``name`` in ``schema``."""
    digest = hashlib.blake2b(f"pbx-bridge:{schema}:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _mark(i: int) -> str:
    return f"${i}"


def _count(status: str) -> int:
    """Rows touched, from asyncpg's command status ("UPDATE 3")."""
    return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0


class AdvisoryLocks:
    """:class:`bridge.adapter.locks.ProcessLocks` on session advisory locks: held on a pooled
    connection for the block; a replica that dies releases them with its session."""

    def __init__(self, storage: PostgresStorage) -> None:
        self._storage = storage

    @asynccontextmanager
    async def hold(self, name: str, wait: float = DEFAULT_WAIT) -> AsyncIterator[None]:
        key = lock_key(self._storage.schema, name)
        async with self._storage._conn() as conn:
            try:
                await conn.execute("SELECT pg_advisory_lock($1)", key, timeout=wait)
            except TimeoutError:
                raise LockTimeout(f"lock {name!r} held elsewhere for {wait:.0f} s") from None
            try:
                yield
            finally:
                try:
                    await conn.execute("SELECT pg_advisory_unlock($1)", key)
                except _DOWN:  # never hand a connection holding the lock back to the pool
                    conn.terminate()


class PostgresStorage(Storage):
    backend = "postgresql"

    def __init__(self, pool: asyncpg.Pool, url: str, dsn: str, schema: str, **kw: Any) -> None:
        super().__init__(**kw)
        self._pool = pool
        self._url = url
        self._dsn = dsn
        self.schema = schema
        self.channel = f"pbx_bridge_{schema}"
        self._settings = {"search_path": schema}
        self._leads: set[str] = set()
        self._lead_conn: asyncpg.Connection | None = None
        self._lead_lock = asyncio.Lock()
        self._lead_checked = 0.0
        self._wake: Callable[[set[str]], None] | None = None
        self._listener: asyncio.Task[None] | None = None
        self._listen_conn: asyncpg.Connection | None = None
        self._failed = False
        self._closed = False

    @classmethod
    async def open(cls, url: str, **kw: Any) -> PostgresStorage:
        dsn, schema = split_url(url)
        shown = redact_url(url)
        try:
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=POOL_SIZE,
                timeout=CONNECT_TIMEOUT,
                command_timeout=COMMAND_TIMEOUT,
                server_settings={"search_path": schema, "application_name": "pbx-bridge"},
            )
        except _DOWN as exc:
            why = str(exc) or type(exc).__name__
            if isinstance(exc, TimeoutError):  # a host that takes the connection, never answers
                why = f"no answer within {CONNECT_TIMEOUT:g} s"
            raise StorageError(f"cannot reach PostgreSQL at {shown}: {why}") from exc
        except ValueError as exc:  # asyncpg's own DSN checks: a bad sslmode, port…
            raise StorageError(f"PostgreSQL at {shown}: {exc}") from exc
        storage = cls(pool, shown, dsn, schema, **kw)
        try:
            storage.migrated = await storage.migrate()
        except BaseException:
            await storage.close()
            raise
        return storage

    @property
    def where(self) -> str:
        return self._url

    @property
    def last_commit_failed(self) -> bool:
        return self._failed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        for conn in (self._listen_conn, self._lead_conn):
            if conn is not None and not conn.is_closed():
                with contextlib.suppress(*_DOWN):
                    await asyncio.wait_for(conn.close(), 2)
        self._leads.clear()
        with contextlib.suppress(*_DOWN):
            await asyncio.wait_for(self._pool.close(), 5)

    @asynccontextmanager
    async def _conn(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection; any failure to talk to the server is a StorageError."""
        try:
            async with self._pool.acquire(timeout=ACQUIRE_TIMEOUT) as conn:
                yield conn
        except StorageError:
            raise
        except _DOWN as exc:
            raise StorageError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._conn() as conn, conn.transaction():
            yield conn

    async def migrate(self) -> tuple[int, int]:
        """Apply pending migrations under a transaction-scoped advisory lock."""
        async with self._tx() as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(self.schema, "migrate"))
            # Only when missing: CREATE SCHEMA needs CREATE on the database even with IF NOT
            # EXISTS, which a bridge user owning just its schema (public) does not have.
            if not await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", self.schema
            ):
                try:
                    await conn.execute(f'CREATE SCHEMA "{self.schema}"')
                except asyncpg.InsufficientPrivilegeError as exc:
                    raise StorageError(
                        f"schema {self.schema} does not exist and this user may not create it"
                        f" ({exc}): create it for the bridge's user (CREATE SCHEMA"
                        f" {self.schema} AUTHORIZATION <user>), or grant CREATE on the database"
                    ) from exc
            version = 0
            if await conn.fetchval("SELECT to_regclass('meta')") is not None:
                value = await conn.fetchval("SELECT value FROM meta WHERE key = 'schema_version'")
                version = int(value or 0)
            if version > migrations.LATEST:
                raise StorageError(migrations.too_new(version, self.where))
            for number in range(version + 1, migrations.LATEST + 1):
                for statement in migrations.statements(number, "postgresql"):
                    await conn.execute(statement)
            if version < migrations.LATEST:
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('schema_version', $1)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    str(migrations.LATEST),
                )
                log.info("database migrated", where=self.where, to=migrations.LATEST, was=version)
        return version, migrations.LATEST

    async def schema_version(self) -> int:
        return int(await self.meta("schema_version") or 0)

    async def hold_instance(self) -> None:
        return  # replicas share the database by design

    async def ping_write(self, now: float) -> None:
        await self.put_meta("heartbeat", repr(now))

    async def probe_event_write(self, now: float) -> None:
        async with self._tx() as conn:
            row_id = await conn.fetchval(
                "INSERT INTO events (domain, uuid, event, payload, received_at)"
                " VALUES ('', $1, 'readyz_probe', $2, $3) RETURNING id",
                f"readyz-probe-{now!r}-{self.owner}",
                PROBE_PAYLOAD,
                now,
            )
            await conn.execute("DELETE FROM events WHERE id = $1", row_id)

    async def newest_event_at(self) -> float | None:
        async with self._conn() as conn:
            return await conn.fetchval("SELECT received_at FROM events ORDER BY id DESC LIMIT 1")

    # --- events -------------------------------------------------------------------------

    async def append(
        self, events: Sequence[IncomingEvent], planned: PlannedJobs, now: float
    ) -> tuple[list[Stored], set[str]]:
        try:
            async with self._tx() as conn:
                rows = await conn.fetch(
                    "INSERT INTO events (domain, uuid, event, payload, received_at, recovered)"
                    " SELECT d, u, ev, p, $5, r FROM unnest($1::text[], $2::text[], $3::text[],"
                    " $4::text[], $6::int[]) AS t (d, u, ev, p, r)"
                    " ON CONFLICT (domain, uuid, event) DO NOTHING"
                    " RETURNING id, domain, uuid, event",
                    [e.domain for e in events],
                    [e.uuid for e in events],
                    [e.stored_event for e in events],
                    [
                        json.dumps(e.payload, ensure_ascii=False, separators=(",", ":"))
                        for e in events
                    ],
                    now,
                    [int(e.recovered) for e in events],
                )
                inserted = {(r[1], r[2], r[3]): r[0] for r in rows}
                results: list[Stored] = []
                adapters: set[str] = set()
                job_event, job_adapter, job_action = [], [], []
                for ev in events:
                    event_id = inserted.pop(ev.key, None)
                    if event_id is None:
                        results.append(Stored(None, True, 0))
                        continue
                    plan = planned.get(ev.event, [])
                    for adapter, action in plan:
                        job_event.append(event_id)
                        job_adapter.append(adapter)
                        job_action.append(action)
                        adapters.add(adapter)
                    results.append(Stored(event_id, False, len(plan)))
                if job_event:
                    await conn.execute(
                        "INSERT INTO jobs (event_id, adapter, action, due_at, created_at,"
                        " updated_at) SELECT e, a, ac, $4, $4, $4"
                        " FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t (e, a, ac)",
                        job_event,
                        job_adapter,
                        job_action,
                        now,
                    )
                    # Delivered to every listener when (and only if) this transaction commits.
                    await conn.execute(
                        "SELECT pg_notify($1, $2)", self.channel, ",".join(sorted(adapters))
                    )
        except StorageError:
            self._failed = True
            raise
        self._failed = False
        return results, adapters

    async def final_uuids(
        self, uuids: Sequence[str], domain: str, events: Sequence[str]
    ) -> set[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT DISTINCT uuid FROM events WHERE uuid = ANY($1::text[])"
                " AND event = ANY($2::text[]) AND domain IN ($3, '')",
                list(uuids),
                list(events),
                domain,
            )
        return {r[0] for r in rows}

    # --- jobs ---------------------------------------------------------------------------

    async def claim(
        self, adapter: str, limit: int, now: float, *, live: int | None = None
    ) -> list[Job]:
        async with self._tx() as conn:
            # One claimer per adapter at a time, across replicas (the worker's lead already
            # makes it so; this keeps per-call order true for any caller): a call's job
            # inserted by another replica and committed out of id order is then seen
            # running by the next claim, never claimed beside it.
            await conn.execute(
                "SELECT pg_advisory_xact_lock($1)", lock_key(self.schema, f"claim:{adapter}")
            )
            fast = await self._take(conn, "live", adapter, limit if live is None else live, now)
            rest = limit - len(fast) if live is None else limit
            return fast + await self._take(conn, "post", adapter, rest, now)

    async def _take(
        self, conn: asyncpg.Connection, lane: str, adapter: str, n: int, now: float
    ) -> list[Job]:
        """Claim up to ``n`` jobs of one lane, in their call's turn (see tables.IN_TURN).

        Two statements, so each walks an index in due order and stops after ``n``: first
        the rare jobs a clock ahead booked (``AHEAD``: due now), then the plain due ones.
        One statement with the whole ``DUE`` disjunction made PostgreSQL read and sort every
        pending job, and hash-join them all against their calls (78 ms at 50,000 pending);
        ``IN_TURN_EACH`` is a per-row probe it cannot flatten into such a join."""
        # The ids a clock ahead booked are read on their own first (almost always none):
        # inside the claim as an IN (…) the planner, without statistics on a fresh or
        # never-analyzed table, ran the pair of index ranges once per pending job (780 ms
        # with 3,000 pending, seen stalling the replica harness); alone it runs them once.
        ahead = AHEAD.format(adapter="$1", ahead="$2", slack="$3", lane=LANES[lane])
        early = [
            r[0] for r in await conn.fetch(ahead, adapter, now + MAX_DUE_AHEAD, now + CLOCK_SLACK)
        ]
        taken: list[Job] = []
        steps: list[tuple[str, tuple[Any, ...]]] = [("j.due_at <= $2", ())]
        if early:
            steps.insert(0, ("j.id = ANY($6::bigint[])", (early,)))
        for due, more in steps:
            if len(taken) >= n:
                break
            rows = await conn.fetch(
                "WITH picked AS (SELECT j.id FROM jobs j"
                f" WHERE j.status = 'pending' AND j.adapter = $1 AND {LANES[lane]}"
                f" AND {due} AND {IN_TURN_EACH}"
                # due_at alone: the index's own order, so the walk stops after LIMIT (an
                # id tie-break made it sort every due job first; ties keep insertion order
                # in the index, and a call's order is IN_TURN's, not this one's).
                " ORDER BY j.due_at LIMIT $3 FOR UPDATE OF j SKIP LOCKED),"
                " j AS (UPDATE jobs SET status = 'running', attempts = jobs.attempts + 1,"
                " updated_at = $2, lease_owner = $4, lease_expires = $5"
                " FROM picked WHERE jobs.id = picked.id RETURNING jobs.*)"
                f" SELECT {JOB_COLUMNS} FROM j JOIN events e ON e.id = j.event_id"
                " ORDER BY j.due_at, j.id",
                adapter,
                now,
                n - len(taken),
                self.owner,
                now + self.lease_seconds,
                *more,
            )
            taken += [Job.from_row(r) for r in rows]
        return taken

    async def renew(self, job_ids: Sequence[int], now: float) -> int:
        if not job_ids:
            return 0
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE jobs SET lease_expires = $1 WHERE status = 'running'"
                " AND lease_owner = $2 AND id = ANY($3::bigint[])",
                now + self.lease_seconds,
                self.owner,
                list(job_ids),
            )
        return _count(status)

    async def _book(
        self, job_id: int, status: str, now: float, result: Any, error: Any, due_at: Any
    ) -> bool:
        async with self._conn() as conn:
            done = await conn.execute(
                "UPDATE jobs SET status = $1, updated_at = $2, result = $3, last_error = $4,"
                " due_at = COALESCE($5, due_at), lease_owner = NULL, lease_expires = NULL"
                " WHERE id = $6 AND status = 'running' AND lease_owner = $7",
                status,
                now,
                result,
                error,
                due_at,
                job_id,
                self.owner,
            )
        return _count(done) == 1

    async def release(self, job_id: int, now: float) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "UPDATE jobs SET status = 'pending', attempts = GREATEST(attempts - 1, 0),"
                " updated_at = $1, lease_owner = NULL, lease_expires = NULL"
                " WHERE id = $2 AND status = 'running' AND lease_owner = $3",
                now,
                job_id,
                self.owner,
            )

    async def requeue_expired(self, now: float, adapter: str | None = None) -> int:
        # Expired by this replica's clock *and* the database's: a replica whose clock runs
        # ahead (by more than a lease) must not take the jobs a live replica is running.
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE jobs SET status = 'pending', updated_at = $1, lease_owner = NULL,"
                " lease_expires = NULL WHERE status = 'running'"
                " AND (lease_expires IS NULL OR lease_expires"
                " < LEAST($1, extract(epoch FROM clock_timestamp())::float8))"
                " AND ($2::text IS NULL OR adapter = $2)",
                now,
                adapter,
            )
        return _count(status)

    async def next_due(self, adapter: str, now: float, *, lane: str | None = None) -> float | None:
        lane_sql = LANES[lane]
        # As on SQLite: the first job in due order that is in its call's turn, and whether
        # a clock that was ahead booked one (then it is due now).
        async with self._conn() as conn:
            due = await conn.fetchval(
                "SELECT j.due_at FROM jobs j JOIN events e ON e.id = j.event_id"
                f" WHERE j.status = 'pending' AND j.adapter = $1 AND {lane_sql} AND {IN_TURN}"
                " ORDER BY j.due_at LIMIT 1",
                adapter,
            )
            ahead_ids = AHEAD.format(adapter="$1", ahead="$2", slack="$3", lane=lane_sql)
            ahead = await conn.fetchval(
                "SELECT 1 FROM jobs j JOIN events e ON e.id = j.event_id"
                f" WHERE j.id IN ({ahead_ids}) AND {IN_TURN} LIMIT 1",
                adapter,
                now + MAX_DUE_AHEAD,
                now + CLOCK_SLACK,
            )
        if ahead is not None:
            return now if due is None or due > now else due
        return due

    async def call_events(self, domain: str, uuid: str) -> set[str]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT event FROM events WHERE domain = $1 AND uuid = $2", domain, uuid
            )
        return {r[0] for r in rows}

    async def job_counts(self) -> dict[str, dict[str, int]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                "SELECT adapter, status, COUNT(*) FROM jobs GROUP BY adapter, status"
            )
        return by_adapter(rows)

    async def list_jobs(
        self, *, status: str | None = None, adapter: str | None = None, limit: int = 50
    ) -> list[Job]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id"
                " WHERE ($1::text IS NULL OR j.status = $1)"
                " AND ($2::text IS NULL OR j.adapter = $2) ORDER BY j.id DESC LIMIT $3",
                status or None,
                adapter or None,
                limit,
            )
        return [Job.from_row(r) for r in rows]

    async def get_job(self, job_id: int) -> Job | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                f"SELECT {JOB_COLUMNS} FROM jobs j JOIN events e ON e.id = j.event_id"
                " WHERE j.id = $1",
                job_id,
            )
        return None if row is None else Job.from_row(row)

    async def retry_dead(self, job_ids: Sequence[int] | None, now: float) -> int:
        async with self._conn() as conn:
            status = await conn.execute(
                "UPDATE jobs SET status = 'pending', due_at = $1, attempts = 0, updated_at = $1,"
                " created_at = $1 WHERE status = 'dead'"
                " AND ($2::bigint[] IS NULL OR id = ANY($2::bigint[]))",
                now,
                None if job_ids is None else list(job_ids),
            )
        return _count(status)

    async def notify(self, adapters: set[str]) -> None:
        if adapters:
            async with self._conn() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", self.channel, ",".join(adapters))

    # --- records ------------------------------------------------------------------------

    async def call_record(self, adapter: str, call_key: str, name: str) -> str | None:
        async with self._conn() as conn:
            return await conn.fetchval(
                "SELECT value FROM crm_objects WHERE adapter = $1 AND call_key = $2 AND name = $3",
                adapter,
                call_key,
                name,
            )

    async def put_call_record(
        self, adapter: str, call_key: str, name: str, value: str, now: float
    ) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO crm_objects (adapter, call_key, name, value, created_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (adapter, call_key, name)"
                " DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                adapter,
                call_key,
                name,
                value,
                now,
            )

    async def adapter_value(self, adapter: str, key: str) -> str | None:
        async with self._conn() as conn:
            return await conn.fetchval(
                "SELECT value FROM adapter_state WHERE adapter = $1 AND key = $2", adapter, key
            )

    async def put_adapter_value(self, adapter: str, key: str, value: str, now: float) -> None:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO adapter_state (adapter, key, value, updated_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (adapter, key)"
                " DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                adapter,
                key,
                value,
                now,
            )

    async def meta(self, key: str) -> str | None:
        async with self._conn() as conn:
            return await conn.fetchval("SELECT value FROM meta WHERE key = $1", key)

    async def put_meta(self, key: str, value: str) -> None:
        try:
            async with self._conn() as conn:
                await conn.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2)"
                    " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    key,
                    value,
                )
        except StorageError:
            self._failed = True
            raise
        self._failed = False

    async def put_meta_if_absent(self, key: str, value: str) -> str:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                key,
                value,
            )
            return await conn.fetchval("SELECT value FROM meta WHERE key = $1", key)

    # --- local adapter ------------------------------------------------------------------

    async def local_contact(self, phone: str) -> dict[str, Any] | None:
        async with self._conn() as conn:
            row = await conn.fetchrow(
                "SELECT id, name, owner_id FROM local_contacts WHERE phone = $1", phone
            )
        return None if row is None else dict(row)

    async def local_add_contact(
        self, contact_id: str, phone: str, name: str, owner_id: str | None, created_at: str
    ) -> dict[str, Any]:
        async with self._conn() as conn:
            await conn.execute(
                "INSERT INTO local_contacts (id, phone, name, owner_id, created_at)"
                " VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                contact_id,
                phone,
                name,
                owner_id,
                created_at,
            )
        found = await self.local_contact(phone)
        assert found is not None
        return found

    async def local_add(self, kind: str, row: dict[str, Any]) -> int:
        table, columns, _ = LOCAL[kind]
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        async with self._conn() as conn:
            return await conn.fetchval(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})"
                " ON CONFLICT (call_key) DO UPDATE SET call_key = excluded.call_key RETURNING id",
                *[row.get(c) for c in columns],
            )

    async def local_list(self, kind: str, limit: int = 50) -> list[dict[str, Any]]:
        table, _, shown = LOCAL[kind]
        async with self._conn() as conn:
            rows = await conn.fetch(f"SELECT {shown} FROM {table} ORDER BY id DESC LIMIT $1", limit)
        return [dict(r) for r in rows]

    async def local_count(self, kind: str) -> int:
        async with self._conn() as conn:
            return int(await conn.fetchval(f"SELECT COUNT(*) FROM {LOCAL[kind][0]}"))

    async def local_live_ring(self, row: dict[str, Any]) -> None:
        async with self._conn() as conn:
            await conn.execute(
                live_upsert("ringing", _mark, "strpos"), *live_values(row, "ringing")
            )

    async def local_live_answer(self, row: dict[str, Any]) -> None:
        async with self._conn() as conn:
            await conn.execute(
                live_upsert("answered", _mark, "strpos"), *live_values(row, "answered")
            )

    async def local_live_end(self, call_key: str) -> bool:
        async with self._conn() as conn:
            status = await conn.execute("DELETE FROM local_live WHERE call_key = $1", call_key)
        return _count(status) > 0

    async def local_live_list(
        self, limit: int = 200, since: float | None = None
    ) -> list[dict[str, Any]]:
        async with self._conn() as conn:
            rows = await conn.fetch(
                f"SELECT {', '.join(LIVE_COLUMNS)} FROM local_live WHERE updated_at >= $1"
                " ORDER BY started_at DESC, call_key LIMIT $2",
                since if since is not None else float("-inf"),
                limit,
            )
        return [live_listed(r) for r in rows]

    # --- locks, leads, rates ------------------------------------------------------------

    @property
    def locks(self) -> AdvisoryLocks:
        return AdvisoryLocks(self)

    async def _lead_connection(self) -> asyncpg.Connection:
        conn = self._lead_conn
        if conn is not None and not conn.is_closed():
            return conn
        self._leads.clear()  # a new session holds nothing
        conn = await asyncpg.connect(
            self._dsn, timeout=CONNECT_TIMEOUT, server_settings=self._settings
        )
        conn.add_termination_listener(lambda _conn: self._leads.clear())
        self._lead_conn = conn
        return conn

    async def try_lead(self, name: str) -> bool:
        loop = asyncio.get_running_loop()
        async with self._lead_lock:
            if self._closed:  # a task still running after close must not reconnect and lead
                return False
            try:
                conn = await self._lead_connection()
                if name in self._leads:
                    if loop.time() - self._lead_checked < LEAD_CHECK_EVERY:
                        return True
                    await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
                    self._lead_checked = loop.time()
                    return True
                got = await conn.fetchval(
                    "SELECT pg_try_advisory_lock($1)",
                    lock_key(self.schema, name),
                    timeout=CONNECT_TIMEOUT,
                )
            except _DOWN as exc:
                if self._leads:
                    log.warning("lost the lock connection; leads given up", error=str(exc))
                self._leads.clear()
                if self._lead_conn is not None:
                    self._lead_conn.terminate()
                    self._lead_conn = None
                return False
            if got:
                self._leads.add(name)
                self._lead_checked = loop.time()
            return bool(got)

    def leads(self, name: str) -> bool:
        return (
            name in self._leads and self._lead_conn is not None and not self._lead_conn.is_closed()
        )

    async def resign(self, name: str) -> None:
        async with self._lead_lock:
            if name in self._leads and self._lead_conn is not None:
                self._leads.discard(name)
                with contextlib.suppress(*_DOWN):
                    await self._lead_conn.execute(
                        "SELECT pg_advisory_unlock($1)", lock_key(self.schema, name)
                    )

    async def rate_slot(self, name: str, interval: float) -> float:
        async with self._conn() as conn:
            wait = await conn.fetchval(
                "WITH now AS (SELECT extract(epoch FROM clock_timestamp())::float8 AS t)"
                " INSERT INTO rate_slots AS r (name, next_at) SELECT $1, t + $2 FROM now"
                " ON CONFLICT (name) DO UPDATE"
                " SET next_at = GREATEST(r.next_at, (SELECT t FROM now)) + $2"
                " RETURNING r.next_at - $2 - (SELECT t FROM now)",
                name,
                interval,
            )
        return max(0.0, float(wait))

    def listen(self, wake: Callable[[set[str]], None]) -> None:
        self._wake = wake
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen_forever(), name="pg-listen")

    async def _listen_forever(self) -> None:
        def on_notify(_conn: Any, _pid: int, _channel: str, payload: str) -> None:
            if self._wake is not None:
                self._wake(set(filter(None, payload.split(","))))

        while True:
            try:
                conn = await asyncpg.connect(
                    self._dsn, timeout=CONNECT_TIMEOUT, server_settings=self._settings
                )
                self._listen_conn = conn
                await conn.add_listener(self.channel, on_notify)
                if self._wake is not None:
                    self._wake({"*"})  # notifications sent while we were away: look now
                while not conn.is_closed():
                    await asyncio.sleep(RECONNECT_EVERY)
                    with contextlib.suppress(*_DOWN):
                        await conn.fetchval("SELECT 1", timeout=CONNECT_TIMEOUT)
                        continue
                    conn.terminate()
            except asyncio.CancelledError:
                raise
            except _DOWN as exc:
                log.debug("listener connection failed; retrying", error=str(exc))
            await asyncio.sleep(RECONNECT_EVERY)

    # --- maintenance --------------------------------------------------------------------

    async def prune(self, cutoff: float, chunk: int) -> dict[str, int]:
        deleted = {"jobs": 0, "events": 0, "crm_objects": 0}
        while True:
            async with self._conn() as conn:
                n = _count(
                    await conn.execute(
                        "DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE status = 'done'"
                        " AND updated_at < $1 LIMIT $2)",
                        cutoff,
                        chunk,
                    )
                )
            deleted["jobs"] += n
            if n < chunk:
                break
        after = 0
        while True:
            async with self._tx() as conn:
                first = await conn.fetchrow(
                    "SELECT id, received_at FROM events WHERE id > $1 ORDER BY id LIMIT 1", after
                )
                if first is None or first[1] >= cutoff:
                    break
                gone = await conn.fetch(
                    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e WHERE e.id >= $1"
                    " AND e.id < $2 AND e.received_at < $3"
                    " AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.event_id = e.id))"
                    " RETURNING domain, uuid",
                    first[0],
                    first[0] + chunk,
                    cutoff,
                )
                calls = sorted({(r[0], r[1]) for r in gone})
                if calls:
                    status = await conn.execute(
                        "DELETE FROM crm_objects c USING unnest($1::text[], $2::text[],"
                        " $3::text[]) AS t (k, d, u) WHERE c.call_key = t.k"
                        " AND NOT EXISTS (SELECT 1 FROM events WHERE domain = t.d AND uuid = t.u)",
                        [call_key(d, u) for d, u in calls],
                        [d for d, _ in calls],
                        [u for _, u in calls],
                    )
                    deleted["crm_objects"] += _count(status)
                deleted["events"] += len(gone)
                after = first[0] + chunk - 1
        async with self._conn() as conn:  # calls in progress whose end never came
            stale = _count(
                await conn.execute("DELETE FROM local_live WHERE updated_at < $1", cutoff)
            )
        if stale:
            deleted["local_live"] = stale
        return deleted
