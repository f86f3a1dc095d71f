"""The HubSpot adapter: contacts searched by phone, calls and tasks as CRM v3 objects.

Request shapes follow HubSpot's CRM v3 guides (contacts search, calls, tasks); association
type ids are HubSpot-defined: 194 call→contact, 204 task→contact.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import phonenumbers

from adapters.hubspot.api import HubSpotAPI
from adapters.hubspot.settings import HubSpotSettings
from bridge.adapter import (
    Adapter,
    AdapterContext,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    NewContact,
)
from bridge.phones import Phone

CALL_TO_CONTACT = 194
TASK_TO_CONTACT = 204
CONTACT_PROPERTIES = [
    "firstname",
    "lastname",
    "phone",
    "mobilephone",
    "hubspot_owner_id",
    "hs_searchable_calculated_phone_number",
    "hs_searchable_calculated_mobile_number",
]
CALL_STATUS = {
    "answered": "COMPLETED",
    "missed": "NO_ANSWER",
    "no_answer": "NO_ANSWER",
    "busy": "BUSY",
    "failed": "FAILED",
}


def utc_iso(moment: datetime) -> str:
    """``2026-05-28T20:26:40.000Z``: HubSpot accepts ISO 8601 UTC or epoch milliseconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def national_digits(phone: Phone) -> str:
    """The national significant number: what HubSpot's searchable phone properties hold."""
    return str(phonenumbers.parse(phone.e164).national_number)


def association(contact: Contact | None, type_id: int) -> list[dict[str, Any]]:
    if contact is None:
        return []
    return [
        {
            "to": {"id": contact.id},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
        }
    ]


def _owner(user_id: str | None) -> dict[str, str]:
    return {"hubspot_owner_id": user_id} if user_id else {}


def _name(props: dict[str, Any]) -> str | None:
    name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
    return name or None


class HubSpotAdapter(Adapter):
    Settings = HubSpotSettings
    settings: HubSpotSettings

    def __init__(self, settings: HubSpotSettings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self.api = HubSpotAPI(settings, ctx)

    # -- contacts -------------------------------------------------------------------------

    def search_body(self, phone: Phone) -> dict[str, Any]:
        """Filter groups are OR-ed: the typed properties by every stored form, the
        digits-only searchable ones by the national number. Oldest contact first."""
        nsn = national_digits(phone)
        forms = phone.variants()
        return {
            "filterGroups": [
                {"filters": [{"propertyName": "phone", "operator": "IN", "values": forms}]},
                {"filters": [{"propertyName": "mobilephone", "operator": "IN", "values": forms}]},
                {
                    "filters": [
                        {
                            "propertyName": "hs_searchable_calculated_phone_number",
                            "operator": "EQ",
                            "value": nsn,
                        }
                    ]
                },
                {
                    "filters": [
                        {
                            "propertyName": "hs_searchable_calculated_mobile_number",
                            "operator": "EQ",
                            "value": nsn,
                        }
                    ]
                },
            ],
            "properties": CONTACT_PROPERTIES,
            "sorts": [{"propertyName": "createdate", "direction": "ASCENDING"}],
            "limit": 10,
        }

    @staticmethod
    def _confirmed(phone: Phone, props: dict[str, Any]) -> bool:
        nsn = national_digits(phone)
        return any(phone.matches(str(props.get(k) or "")) for k in ("phone", "mobilephone")) or (
            nsn
            in (
                props.get("hs_searchable_calculated_phone_number"),
                props.get("hs_searchable_calculated_mobile_number"),
            )
        )

    async def find_contact(self, phone: Phone) -> Contact | None:
        data = await self.api.call(
            "POST",
            "/crm/v3/objects/contacts/search",
            "search contacts",
            json=self.search_body(phone),
        )
        hits = [
            r
            for r in data.get("results") or []
            if self._confirmed(phone, r.get("properties") or {})
        ]
        if not hits:
            return None
        first = hits[0]
        props = first.get("properties") or {}
        return Contact(
            id=str(first["id"]),
            name=_name(props),
            owner_id=props.get("hubspot_owner_id") or None,
            extra={"matches": len(hits)} if len(hits) > 1 else {},
        )

    async def create_contact(self, new: NewContact) -> Contact:
        phone, owner_id, name = new.phone, new.owner_id, new.name
        data = await self.api.call(
            "POST",
            "/crm/v3/objects/contacts",
            "create contact",
            json={"properties": {"firstname": name, "phone": phone.e164, **_owner(owner_id)}},
        )
        return Contact(id=str(data["id"]), name=name, owner_id=owner_id)

    # -- calls and tasks ------------------------------------------------------------------

    def call_properties(self, log: CallLog) -> dict[str, Any]:
        c = log.call
        frm, to = c.parties()
        note = self.ctx.texts.render("call_note", c)
        props: dict[str, Any] = {
            "hs_timestamp": utc_iso(c.started_at),
            "hs_call_title": log.title,
            "hs_call_body": f"<p>{html.escape(log.result)}</p><p>{html.escape(note)}</p>",
            "hs_call_direction": "INBOUND" if c.direction == "inbound" else "OUTBOUND",
            "hs_call_duration": str(c.talk_seconds * 1000),  # milliseconds
            "hs_call_status": CALL_STATUS.get(c.outcome, "COMPLETED"),
            "hs_call_from_number": frm,
            "hs_call_to_number": to,
            **_owner(log.user_id),
        }
        if c.recording_url:
            props["hs_call_recording_url"] = c.recording_url
        return props

    async def log_call(self, log: CallLog) -> str:
        # HubSpot has no idempotency key for calls: the pipeline's (adapter, uuid, action)
        # record is what keeps a retry from creating a second call (see the docs' crash window).
        data = await self.api.call(
            "POST",
            "/crm/v3/objects/calls",
            "create call",
            json={
                "properties": self.call_properties(log),
                "associations": association(log.contact, CALL_TO_CONTACT),
            },
        )
        return f"call:{data['id']}"

    def task_properties(self, task: FollowUp) -> dict[str, Any]:
        return {
            "hs_timestamp": utc_iso(task.due_at),  # a task's due date
            "hs_task_subject": task.title,
            "hs_task_body": html.escape(task.description),
            "hs_task_type": "CALL",
            "hs_task_status": "NOT_STARTED",
            "hs_task_priority": "HIGH",
            **_owner(task.user_id),
        }

    async def create_task(self, task: FollowUp) -> str:
        data = await self.api.call(
            "POST",
            "/crm/v3/objects/tasks",
            "create task",
            json={
                "properties": self.task_properties(task),
                "associations": association(task.contact, TASK_TO_CONTACT),
            },
        )
        return f"task:{data['id']}"

    # -- check ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        account = await self.api.call("GET", "/account-info/v3/details", "account details")
        users: list[tuple[str, str]] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100, "archived": "false"}
            if after:
                params["after"] = after
            page = await self.api.call("GET", "/crm/v3/owners", "list owners", params=params)
            for owner in page.get("results") or []:
                name = " ".join(p for p in (owner.get("firstName"), owner.get("lastName")) if p)
                email = owner.get("email") or ""
                label = f"{name} <{email}>" if name and email else (name or email or "?")
                users.append((str(owner["id"]), label))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        portal = account.get("portalId")
        mode = "OAuth" if self.api.auth and self.api.auth.oauth else "private app token"
        return CheckResult(
            account=f"HubSpot portal {portal} ({account.get('accountType', '?')}, {mode})",
            users=users,
            notes=[
                f"time zone {account.get('timeZone', '?')},"
                f" data hosted in {account.get('dataHostingLocation', '?')}"
            ],
        )

    async def aclose(self) -> None:
        await self.api.aclose()
