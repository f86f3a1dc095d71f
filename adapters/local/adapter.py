"""``local``: call logs and follow-up tasks kept in the bridge's own SQLite file.

The embedded default: it needs no CRM account, and ``pbx-bridge calls`` / ``pbx-bridge tasks``
list what it wrote. Also a reference for adapter authors: the whole contract, no HTTP.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Any

from bridge.adapter import (
    Adapter,
    AdapterSettings,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
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

    @staticmethod
    async def list_calls(db: Database, limit: int = 50) -> list[dict[str, Any]]:
        """What ``pbx-bridge calls`` shows."""
        return await list_calls(db, limit)

    @staticmethod
    async def list_tasks(db: Database, limit: int = 50) -> list[dict[str, Any]]:
        """What ``pbx-bridge tasks`` shows."""
        return await list_tasks(db, limit)

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


async def list_tasks(db: Database, limit: int = 50) -> list[dict[str, Any]]:
    return await _rows(
        db, "SELECT id, due_at, client, title, user_id, contact_id, uuid FROM local_tasks", limit
    )
