"""The HubSpot adapter: contacts searched by phone, calls and tasks as CRM v3 objects.

Request shapes follow HubSpot's CRM v3 guides (contacts search, calls, tasks); association
type ids are HubSpot-defined: call → contact 194, → company 182, → deal 206; task → contact
204, → company 192, → deal 216.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from adapters.hubspot.api import HubSpotAPI
from adapters.hubspot.settings import HubSpotSettings
from bridge.adapter import (
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    JsonAdapter,
    NewContact,
)
from bridge.phones import Phone

# HubSpot-defined association type ids, by what is associated with the call / task.
CALL_TO = {"contact": 194, "company": 182, "deal": 206}
TASK_TO = {"contact": 204, "company": 192, "deal": 216}
# HubSpot's default call outcomes (hs_call_disposition takes their GUIDs; a portal may add
# its own: the `dispositions` setting maps an outcome name to one of those instead).
DEFAULT_DISPOSITIONS = {
    "connected": "f240bbac-87c9-4f6e-bf70-924b57d47db7",
    "busy": "9d9162e7-6cf3-4944-bf63-4dff82258764",
    "no_answer": "73a0d17f-1163-4015-bdd5-ec830791da20",
    "wrong_number": "17b47fee-58de-441e-a44c-c6300d46f273",
    "left_voicemail": "b2cf5968-551e-4856-9783-52b3da59a7d0",
    "left_live_message": "a4c4c377-d246-4b32-a13b-75a56a4cd0ff",
}
# HubSpot plays a recording only from an https link to a .mp3 or .wav file.
PLAYABLE = (".mp3", ".wav")
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
    """The national significant number, Italian-style leading zeros kept: what HubSpot's
    searchable phone properties hold."""
    return phone.significant or phone.last10


def associations(contact: Contact | None, type_ids: dict[str, int]) -> list[dict[str, Any]]:
    """The contact, and its primary company and open deal when the lookup found them."""
    if contact is None:
        return []
    targets = {"contact": contact.id, **{k: contact.extra.get(k) for k in ("company", "deal")}}
    return [
        {
            "to": {"id": str(target)},
            "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_ids[kind]}
            ],
        }
        for kind, target in targets.items()
        if target
    ]


def playable(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme == "https" and parts.path.lower().endswith(PLAYABLE)


def _owner(user_id: str | None) -> dict[str, str]:
    return {"hubspot_owner_id": user_id} if user_id else {}


def _name(props: dict[str, Any]) -> str | None:
    name = " ".join(p for p in (props.get("firstname"), props.get("lastname")) if p)
    return name or None


class HubSpotAdapter(JsonAdapter[HubSpotSettings, HubSpotAPI]):
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
        links = await self._company_and_deal(str(first["id"])) if self.settings.link_deals else {}
        return Contact(
            id=str(first["id"]),
            name=_name(props),
            owner_id=props.get("hubspot_owner_id") or None,
            extra={**links, **({"matches": len(hits)} if len(hits) > 1 else {})},
        )

    async def _company_and_deal(self, contact_id: str) -> dict[str, str]:
        """The contact's primary company and its most recently changed open deal."""
        data = await self.api.call(
            "GET",
            f"/crm/v3/objects/contacts/{contact_id}",
            "contact associations",
            params={"associations": "companies,deals", "properties": "hs_object_id"},
        )
        linked = data.get("associations") or {}
        companies = (linked.get("companies") or {}).get("results") or []
        # "contact_to_company" is the primary company; "…_unlabeled" the others.
        primary = [c for c in companies if c.get("type") == "contact_to_company"] or companies
        out: dict[str, str] = {}
        if primary:
            out["company"] = str(primary[0]["id"])
        deal_ids = list(
            dict.fromkeys(str(d["id"]) for d in (linked.get("deals") or {}).get("results") or [])
        )
        if deal_ids:
            deals = await self.api.call(
                "POST",
                "/crm/v3/objects/deals/batch/read",
                "read deals",
                json={
                    "properties": ["hs_is_closed", "hs_lastmodifieddate"],
                    "inputs": [{"id": d} for d in deal_ids[:100]],
                },
            )
            open_deals = [
                d
                for d in deals.get("results") or []
                if str((d.get("properties") or {}).get("hs_is_closed")).lower() != "true"
            ]
            open_deals.sort(
                key=lambda d: str((d.get("properties") or {}).get("hs_lastmodifieddate") or ""),
                reverse=True,
            )
            if open_deals:
                out["deal"] = str(open_deals[0]["id"])
        return out

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
            "hs_call_disposition": self.disposition(c),
            **_owner(log.user_id),
        }
        if playable(c.recording_url):
            props["hs_call_recording_url"] = c.recording_url
        elif c.recording_url:  # HubSpot would refuse it: a link in the body instead
            link = html.escape(c.recording_url)
            props["hs_call_body"] += f'<p><a href="{link}">recording</a></p>'
        return props

    def disposition(self, call: Any) -> str:
        if call.answered:
            outcome = "connected"
        elif call.outcome == "busy":
            outcome = "busy"
        elif call.wrong_number:
            outcome = "wrong_number"
        else:
            outcome = "no_answer"
        return self.settings.dispositions.get(outcome) or DEFAULT_DISPOSITIONS[outcome]

    async def log_call(self, log: CallLog) -> str:
        # HubSpot has no idempotency key for calls: the pipeline's (adapter, uuid, action)
        # record is what keeps a retry from creating a second call (see the docs' crash window).
        data = await self.api.call(
            "POST",
            "/crm/v3/objects/calls",
            "create call",
            json={
                "properties": self.call_properties(log),
                "associations": associations(log.contact, CALL_TO),
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
                "associations": associations(task.contact, TASK_TO),
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
        outcomes = await self.api.call("GET", "/calling/v1/dispositions", "call outcomes")
        known = {str(o.get("id")): str(o.get("label")) for o in outcomes or [] if o.get("id")}
        chosen = {**DEFAULT_DISPOSITIONS, **self.settings.dispositions}
        unknown = [
            f"dispositions.{name} = {guid!r}"
            for name, guid in self.settings.dispositions.items()
            if guid not in known
        ]
        mode = "OAuth" if self.api.auth and self.api.auth.oauth else "private app token"
        return CheckResult(
            account=f"HubSpot portal {portal} ({account.get('accountType', '?')}, {mode})",
            users=users,
            notes=[
                f"time zone {account.get('timeZone', '?')},"
                f" data hosted in {account.get('dataHostingLocation', '?')}",
                "call outcomes: "
                + ", ".join(
                    f"{name} → {known.get(chosen[name], chosen[name])}"
                    for name in ("connected", "busy", "no_answer", "wrong_number")
                ),
                *(
                    [f"unknown call outcome GUID(s), not in this portal: {', '.join(unknown)}"]
                    if unknown
                    else []
                ),
            ],
        )
