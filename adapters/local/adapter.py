"""``local``: call logs and follow-up tasks kept in the bridge's own SQLite file.

The embedded default: it needs no CRM account, and ``pbx-bridge calls`` / ``pbx-bridge tasks``
list what it wrote. Also a reference for adapter authors: the whole contract, no HTTP.

It also keeps the calls in progress (``local_live_calls``: ringing at which extensions,
answered by whom), so the bridge itself can show them: :func:`live_calls` lists them and
:data:`LIVE_FEED` wakes whoever waits for a change (the admin console's live view).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid as uuidlib
from typing import Any

from bridge.adapter import (
    Adapter,
    AdapterSettings,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    LiveCall,
    NewContact,
)
from bridge.phones import Phone
from bridge.store.db import Database

TABLES = """
CREATE TABLE IF NOT EXISTS local_contacts (
    id         TEXT PRIMARY KEY,
    phone      TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    owner_id   TEXT,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS local_calls (
    id            INTEGER PRIMARY KEY,
    call_key      TEXT NOT NULL UNIQUE,
    uuid          TEXT NOT NULL,
    direction     TEXT NOT NULL,
    client        TEXT NOT NULL,
    extension     TEXT,
    line          TEXT,
    started_at    TEXT NOT NULL,
    talk_seconds  INTEGER NOT NULL,
    total_seconds INTEGER NOT NULL,
    result        TEXT NOT NULL,
    user_id       TEXT,
    contact_id    TEXT,
    recording_url TEXT
);
CREATE TABLE IF NOT EXISTS local_live_calls (
    call_key     TEXT PRIMARY KEY,
    uuid         TEXT NOT NULL,
    direction    TEXT NOT NULL,
    client       TEXT NOT NULL,
    line         TEXT,
    contact_id   TEXT,
    contact_name TEXT,
    state        TEXT NOT NULL,
    ringing      TEXT NOT NULL,
    answered_by  TEXT,
    user_id      TEXT,
    started_at   REAL NOT NULL,
    updated_at   REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS local_tasks (
    id          INTEGER PRIMARY KEY,
    call_key    TEXT NOT NULL UNIQUE,
    uuid        TEXT NOT NULL,
    client      TEXT NOT NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    due_at      TEXT NOT NULL,
    user_id     TEXT,
    contact_id  TEXT
);
"""


LIVE_FORGET_SECONDS = 4 * 3600.0  # a call whose end never arrived stops being listed


class LiveFeed:
    """A change counter for the live calls: ``await wait(seen)`` returns once it moved past
    ``seen`` (or after ``timeout``), so a server-sent-events loop pushes changes at once."""

    def __init__(self) -> None:
        self.version = 0
        self._changed = asyncio.Event()

    def bump(self) -> None:
        self.version += 1
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait(self, seen: int, timeout: float = 15.0) -> int:
        if self.version == seen:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout)
        return self.version


LIVE_FEED = LiveFeed()


class LocalSettings(AdapterSettings):
    rate_limit: float = 0.0  # no remote service to protect


class LocalAdapter(Adapter):
    Settings = LocalSettings

    @property
    def _db(self) -> Database:
        return self.ctx.db

    async def setup(self) -> None:
        async with self._db.transaction() as conn:
            for statement in TABLES.split(";"):
                if statement.strip():
                    await conn.execute(statement)

    async def find_contact(self, phone: Phone) -> Contact | None:
        row = await self._db.fetchone(
            "SELECT id, name, owner_id FROM local_contacts WHERE phone = ?", (phone.e164,)
        )
        return None if row is None else Contact(row[0], row[1], row[2])

    async def create_contact(self, new: NewContact) -> Contact:
        await self._db.write(
            "INSERT OR IGNORE INTO local_contacts (id, phone, name, owner_id, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (
                uuidlib.uuid4().hex[:12],
                new.phone.e164,
                new.name,
                new.owner_id,
                new.call.ended_at.isoformat(),
            ),
        )
        found = await self.find_contact(new.phone)
        assert found is not None
        return found

    async def log_call(self, log: CallLog) -> str:
        c = log.call
        rows = await self._db.write(
            "INSERT INTO local_calls (call_key, uuid, direction, client, extension, line,"
            " started_at, talk_seconds, total_seconds, result, user_id, contact_id, recording_url)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (call_key) DO UPDATE SET call_key = excluded.call_key RETURNING id",
            (
                c.key,
                c.uuid,
                c.direction,
                c.client_number,
                c.extension,
                c.gateway,
                c.started_at.isoformat(),
                c.talk_seconds,
                c.total_seconds,
                log.result,
                log.user_id,
                log.contact.id if log.contact else None,
                c.recording_url,
            ),
        )
        return f"call:{rows[0][0]}"

    async def create_task(self, task: FollowUp) -> str:
        c = task.call
        rows = await self._db.write(
            "INSERT INTO local_tasks (call_key, uuid, client, title, description, due_at,"
            " user_id, contact_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (call_key) DO UPDATE SET call_key = excluded.call_key RETURNING id",
            (
                c.key,
                c.uuid,
                c.client_number,
                task.title,
                task.description,
                task.due_at.isoformat(),
                task.user_id,
                task.contact.id if task.contact else None,
            ),
        )
        return f"task:{rows[0][0]}"

    # --- calls in progress ------------------------------------------------------------------

    async def _live_row(self, live: LiveCall) -> dict[str, Any]:
        row = await self._db.fetchone(
            "SELECT ringing, state, answered_by FROM local_live_calls WHERE call_key = ?",
            (live.call.key,),
        )
        if row is None:
            return {"ringing": [], "state": "ringing", "answered_by": None}
        return {"ringing": json.loads(row[0]), "state": row[1], "answered_by": row[2]}

    async def _live_put(self, live: LiveCall, row: dict[str, Any]) -> None:
        c, now = live.call, self.ctx.clock()
        await self._db.write(
            "INSERT INTO local_live_calls (call_key, uuid, direction, client, line, contact_id,"
            " contact_name, state, ringing, answered_by, user_id, started_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_key) DO UPDATE SET"
            " state = excluded.state, ringing = excluded.ringing,"
            " answered_by = excluded.answered_by, user_id = excluded.user_id,"
            " contact_id = COALESCE(excluded.contact_id, contact_id),"
            " contact_name = COALESCE(excluded.contact_name, contact_name),"
            " updated_at = excluded.updated_at",
            (
                c.key,
                c.uuid,
                c.direction,
                c.client.e164 if c.client else c.client_raw,
                c.gateway or None,
                live.contact.id if live.contact else None,
                live.contact.name if live.contact else None,
                row["state"],
                json.dumps(row["ringing"]),
                row["answered_by"],
                live.user_id,
                now,
                now,
            ),
        )
        LIVE_FEED.bump()

    async def ringing(self, live: LiveCall) -> str:
        row = await self._live_row(live)
        if row["state"] == "answered":
            return "skipped: already answered"
        if live.extension not in row["ringing"]:
            row["ringing"].append(live.extension)
        await self._live_put(live, row)
        return f"ringing:{live.extension}"

    async def answered(self, live: LiveCall) -> str:
        row = await self._live_row(live)
        row.update(state="answered", answered_by=live.extension)
        await self._live_put(live, row)
        return f"answered:{live.extension}"

    async def over(self, live: LiveCall) -> str:
        rows = await self._db.write(
            "DELETE FROM local_live_calls WHERE call_key = ? RETURNING call_key",
            (live.call.key,),
        )
        if rows:
            LIVE_FEED.bump()
        return "over" if rows else "over: was not shown"

    @staticmethod
    async def list_calls(db: Database, limit: int = 50) -> list[dict[str, Any]]:
        """What ``pbx-bridge calls`` shows."""
        return await list_calls(db, limit)

    @staticmethod
    async def list_tasks(db: Database, limit: int = 50) -> list[dict[str, Any]]:
        """What ``pbx-bridge tasks`` shows."""
        return await list_tasks(db, limit)

    @staticmethod
    async def live_calls(db: Database, now: float | None = None) -> list[dict[str, Any]]:
        """The calls in progress (see :func:`live_calls`)."""
        return await live_calls(db, now)

    async def check(self) -> CheckResult:
        await self.setup()
        row = await self._db.fetchone("SELECT COUNT(*) FROM local_calls")
        return CheckResult(
            account=f"local database {self._db.path}",
            notes=[f"{row[0] if row else 0} calls logged so far"],
        )


async def _rows(db: Database, sql: str, limit: int) -> list[dict[str, Any]]:
    try:
        rows = await db.fetchall(sql + " ORDER BY id DESC LIMIT ?", (limit,))
    except Exception:  # tables not created yet: nothing logged
        return []
    return [dict(r) for r in rows]


async def list_calls(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return await _rows(
        db,
        "SELECT id, started_at, direction, client, extension, line, talk_seconds, result,"
        " user_id, contact_id, uuid FROM local_calls",
        limit,
    )


async def live_calls(db: Database, now: float | None = None) -> list[dict[str, Any]]:
    """The calls in progress, oldest first: ``ringing`` is the list of extensions that rang,
    ``state`` "ringing" or "answered" (then ``answered_by``)."""
    since = (time.time() if now is None else now) - LIVE_FORGET_SECONDS
    try:
        rows = await db.fetchall(
            "SELECT uuid, direction, client, line, contact_id, contact_name, state, ringing,"
            " answered_by, user_id, started_at, updated_at FROM local_live_calls"
            " WHERE updated_at > ? ORDER BY started_at",
            (since,),
        )
    except Exception:  # table not created yet: no call seen
        return []
    out = []
    for r in rows:
        item = dict(r)
        item["ringing"] = json.loads(item["ringing"])
        out.append(item)
    return out


async def list_tasks(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return await _rows(
        db, "SELECT id, due_at, client, title, user_id, contact_id, uuid FROM local_tasks", limit
    )
