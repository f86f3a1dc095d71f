"""The Pipedrive adapter: persons searched by phone, call logs (v1) and activities (v2).

Request shapes follow Pipedrive's official OpenAPI files (``shared/crm-specs/pipedrive``);
the test suite validates every request it sends against them.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from adapters.pipedrive.api import PipedriveAPI
from adapters.pipedrive.settings import PipedriveSettings
from bridge.adapter import (
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    JsonAdapter,
    NewContact,
    Permanent,
    compact,
    fetch_recording,
    user_number,
)
from bridge.call import Call
from bridge.phones import Phone

OUTCOME = {"answered": "connected", "busy": "busy", "missed": "no_answer", "no_answer": "no_answer"}
# Per-call state: the call log created (so a retry of the upload never logs twice) and
# whether its recording is settled (uploaded, or given up with the reason).
CALL_LOG = "pipedrive.call_log"
RECORDING = "pipedrive.recording"


def utc_time(moment: datetime) -> str:
    """Call-log times. The spec's prose says "in UTC. Format: YYYY-MM-DD HH:MM:SS" while
    its schema says ``format: date-time`` (RFC 3339) and its own example answers
    ``2022-12-12T01:01:01.000Z``. ``2022-12-12T01:01:01Z`` satisfies both: the prose's
    fields in its order, in UTC, written the way the schema requires."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def outcome(call: Call) -> str:
    if call.outcome == "failed":
        return "wrong_number" if call.wrong_number else "no_answer"
    return OUTCOME.get(call.outcome, "no_answer")


class PipedriveAdapter(JsonAdapter[PipedriveSettings, PipedriveAPI]):
    # -- persons --------------------------------------------------------------------------

    async def find_contact(self, phone: Phone) -> Contact | None:
        # A search (20 tokens) by the trailing digits, which every stored format contains
        # when written without separators; hits are confirmed against each person's
        # phones[]. A national number that is not 10 digits long (+49 30 1234567) has no
        # useful "last 10": it is searched by its national form first.
        terms = [phone.significant, phone.last10] if phone.short_national else [phone.last10]
        hits: list[dict[str, Any]] = []
        for term in terms:
            hits = await self._search(term, phone)
            if hits:
                break
        if not hits:
            return None
        person = hits[0]  # the vendor's best result_score first
        owner = (person.get("owner") or {}).get("id")
        org = (person.get("organization") or {}).get("id")
        deal = await self._open_deal(person["id"]) if self.settings.link_deals else None
        return Contact(
            id=str(person["id"]),
            name=person.get("name"),
            owner_id=str(owner) if owner is not None else None,
            kind="person",
            extra=compact(
                {"org_id": org, "deal_id": deal, "matches": len(hits) if len(hits) > 1 else None}
            ),
        )

    async def _search(self, term: str, phone: Phone) -> list[dict[str, Any]]:
        data = await self.api.call(
            "GET",
            "/api/v2/persons/search",
            "search persons",
            params={"term": term, "fields": "phone"},
        )
        return [
            entry.get("item") or {}
            for entry in (data or {}).get("items") or []
            if any(phone.matches(str(p)) for p in (entry.get("item") or {}).get("phones") or [])
        ]

    async def _open_deal(self, person_id: Any) -> int | None:
        """The person's most recently updated open deal (10 tokens), for call logs and
        activities to show on the deal too."""
        deals = await self.api.call(
            "GET",
            "/api/v2/deals",
            "open deals of the person",
            params={
                "person_id": int(person_id),
                "status": "open",
                "sort_by": "update_time",
                "sort_direction": "desc",
                "limit": 1,
            },
        )
        first = (deals or [None])[0] if isinstance(deals, list) else None
        return int(first["id"]) if isinstance(first, dict) and "id" in first else None

    async def create_contact(self, new: NewContact) -> Contact:
        name = new.name
        body = compact(
            {
                "name": name,
                "owner_id": user_number(new.owner_id),
                "phones": [{"value": new.phone.e164, "primary": True, "label": "work"}],
            }
        )
        data = await self.api.call("POST", "/api/v2/persons", "add person", json=body)
        owner = data.get("owner_id")
        return Contact(
            id=str(data["id"]),
            name=data.get("name") or name,
            owner_id=str(owner) if owner is not None else new.owner_id,
            kind="person",
        )

    # -- call logs and activities ---------------------------------------------------------

    def call_log_body(self, log: CallLog) -> dict[str, Any]:
        c = log.call
        frm, to = c.parties(c.line or c.client_number)  # to_phone_number is required
        note = self.ctx.texts.render("call_note", c)
        return compact(
            {
                "user_id": user_number(log.user_id),
                "subject": log.title,
                "duration": str(c.talk_seconds),  # talk time, seconds, a string in the spec
                "outcome": outcome(c),
                "from_phone_number": frm,
                "to_phone_number": to,
                "start_time": utc_time(c.started_at),
                "end_time": utc_time(c.ended_at),
                **self._links(log.contact),
                "note": (
                    f"<p>{html.escape(log.result)}</p><p>{html.escape(note)}</p>"
                    + (
                        f'<p><a href="{html.escape(c.recording_url)}">recording</a></p>'
                        if c.recording_url
                        else ""
                    )
                ),
            }
        )

    @staticmethod
    def _links(contact: Contact | None) -> dict[str, Any]:
        if contact is None:
            return {}
        return compact(
            {
                "person_id": int(contact.id),
                "org_id": contact.extra.get("org_id"),
                "deal_id": contact.extra.get("deal_id"),
            }
        )

    async def log_call(self, log: CallLog) -> str:
        log_id = await log.state.get(CALL_LOG)
        if log_id is None:
            data = await self.api.call(
                "POST", "/v1/callLogs", "add call log", json=self.call_log_body(log)
            )
            log_id = str(data["id"])
            await log.state.put(CALL_LOG, log_id)
        if (
            log.call.recording_url
            and self.settings.upload_recordings
            and await log.state.get(RECORDING) is None
        ):
            await self._upload_recording(log, log_id)
        return f"callLog:{log_id}"

    async def _upload_recording(self, log: CallLog, log_id: str) -> None:
        """The audio file on the call log (Pipedrive plays only uploaded files; the note
        keeps the link). A recording that is gone or too large leaves the link alone; one
        that cannot be fetched or uploaded *yet* retries the job, without a second log."""
        assert log.call.recording_url is not None
        try:
            audio = await fetch_recording(log.call.recording_url, name=log.call.uuid)
        except Permanent as exc:
            self.ctx.log.warning("recording not uploaded", reason=exc.reason)
            await log.state.put(RECORDING, f"not uploaded: {exc.reason}")
            return
        await self.api.call(
            "POST",
            f"/v1/callLogs/{log_id}/recordings",
            "attach recording",
            files={"file": (audio.filename, audio.data, audio.content_type)},
        )
        await log.state.put(RECORDING, "uploaded")

    def activity_body(self, task: FollowUp) -> dict[str, Any]:
        due = task.due_at.astimezone(UTC)  # Pipedrive keeps due_date/due_time in UTC
        return compact(
            {
                "subject": task.title,
                "type": self.settings.activity_type,
                "owner_id": user_number(task.user_id),
                # v2 treats person_id as read-only (400 "Add a primary participant to set
                # 'person_id' instead"): the person is linked as the primary participant.
                "participants": (
                    [{"person_id": int(task.contact.id), "primary": True}] if task.contact else None
                ),
                **{k: v for k, v in self._links(task.contact).items() if k != "person_id"},
                "due_date": due.strftime("%Y-%m-%d"),
                "due_time": due.strftime("%H:%M"),
                "done": False,
                "note": html.escape(task.description),
            }
        )

    async def create_task(self, task: FollowUp) -> str:
        data = await self.api.call(
            "POST", "/api/v2/activities", "add activity", json=self.activity_body(task)
        )
        return f"activity:{data['id']}"

    # -- check ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        me = await self.api.call("GET", "/v1/users/me", "current user")
        users = await self.api.call("GET", "/v1/users", "list users")
        listed = [
            (str(u["id"]), f"{u.get('name') or '?'} <{u.get('email') or ''}>".replace(" <>", ""))
            for u in users or []
            if u.get("active_flag", True)
        ]
        mode = "OAuth" if self.api.auth and self.api.auth.oauth else "API token"
        return CheckResult(
            account=(
                f"Pipedrive company {me.get('company_name', '?')}"
                f" ({me.get('company_domain', '?')}.pipedrive.com, {mode})"
            ),
            users=listed,
            notes=[f"token belongs to {me.get('name', '?')} (user {me.get('id', '?')})"],
        )
