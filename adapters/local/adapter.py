"""``local``: call logs and follow-up tasks kept in the bridge's own database.

The embedded default: it needs no CRM account, and ``pbx-bridge calls`` / ``pbx-bridge tasks``
list what it wrote. Its live actions keep the calls in progress (``local_live``: ringing,
answered, gone when over), which ``pbx-bridge calls --live`` and the admin console show.
Also a reference for adapter authors: the whole contract, no HTTP. Its tables are the
storage's (``local_*``, created by the migrations) and it reaches them through
``ctx.records``, never a connection.
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
    LiveCall,
    NewContact,
    Skipped,
)
from bridge.phones import Phone
from bridge.store import LocalRecords, Storage


class LocalSettings(AdapterSettings):
    rate_limit: float = 0.0  # no remote service to protect
    # `events` is AdapterSettings' default (every action, live ones included), as for every
    # adapter: its calls-in-progress table is on unless `events` is listed without them.


class LocalAdapter(Adapter):
    Settings = LocalSettings

    @property
    def _records(self) -> LocalRecords:
        return self.ctx.records

    async def find_contact(self, phone: Phone) -> Contact | None:
        row = await self._records.contact(phone.e164)
        return None if row is None else Contact(row["id"], row["name"], row["owner_id"])

    async def create_contact(self, new: NewContact) -> Contact:
        row = await self._records.add_contact(
            uuidlib.uuid4().hex[:12],
            new.phone.e164,
            new.name,
            new.owner_id,
            new.call.ended_at.isoformat(),
        )
        return Contact(row["id"], row["name"], row["owner_id"])

    async def log_call(self, log: CallLog) -> str:
        c = log.call
        row_id = await self._records.add(
            "calls",
            {
                "call_key": c.key,
                "uuid": c.uuid,
                "direction": c.direction,
                "client": c.client_number,
                "extension": c.extension,
                "line": c.gateway,
                "started_at": c.started_at.isoformat(),
                "talk_seconds": c.talk_seconds,
                "total_seconds": c.total_seconds,
                "result": log.result,
                "user_id": log.user_id,
                "contact_id": log.contact.id if log.contact else None,
                "recording_url": c.recording_url,
            },
        )
        return f"call:{row_id}"

    async def create_task(self, task: FollowUp) -> str:
        c = task.call
        row_id = await self._records.add(
            "tasks",
            {
                "call_key": c.key,
                "uuid": c.uuid,
                "client": c.client_number,
                "title": task.title,
                "description": task.description,
                "due_at": task.due_at.isoformat(),
                "user_id": task.user_id,
                "contact_id": task.contact.id if task.contact else None,
            },
        )
        return f"task:{row_id}"

    # --- live: the calls in progress (each call's jobs run one at a time, in order) ---------

    def _live_row(self, live: LiveCall) -> dict[str, Any]:
        c = live.call
        return {
            "call_key": c.key,
            "domain": c.domain,
            "uuid": c.uuid,
            "direction": c.direction,
            "client": c.client_number,
            "line": c.gateway,
            "extension": live.extension,
            "user_id": live.user_id,
            "contact_id": live.contact.id if live.contact else None,
            "started_at": c.ended_at.timestamp(),  # a live event's date: when it rang
            "updated_at": self.ctx.clock(),
        }

    async def ringing(self, live: LiveCall) -> str:
        await self._records.ring(self._live_row(live))
        return f"live:{live.extension}"

    async def answered(self, live: LiveCall) -> str:
        await self._records.answer(self._live_row(live))
        return f"live:{live.extension}"

    async def over(self, live: LiveCall) -> str | Skipped:
        if await self._records.end(live.call.key):
            return "live:ended"
        return Skipped("not among the calls in progress (no ring or answer was kept)")

    @staticmethod
    async def list_live(
        storage: Storage, limit: int = 200, since: float | None = None
    ) -> list[dict[str, Any]]:
        """What ``pbx-bridge calls --live`` shows."""
        return await LocalRecords(storage).live(limit, since)

    @staticmethod
    async def list_calls(storage: Storage, limit: int = 50) -> list[dict[str, Any]]:
        """What ``pbx-bridge calls`` shows."""
        return await list_calls(storage, limit)

    @staticmethod
    async def list_tasks(storage: Storage, limit: int = 50) -> list[dict[str, Any]]:
        """What ``pbx-bridge tasks`` shows."""
        return await list_tasks(storage, limit)

    async def check(self) -> CheckResult:
        n = await self._records.count("calls")
        return CheckResult(
            account=f"local database {self._records.where}",
            notes=[f"{n} calls logged so far"],
        )


async def list_calls(storage: Storage, limit: int = 50) -> list[dict[str, Any]]:
    return await LocalRecords(storage).list("calls", limit)


async def list_tasks(storage: Storage, limit: int = 50) -> list[dict[str, Any]]:
    return await LocalRecords(storage).list("tasks", limit)
