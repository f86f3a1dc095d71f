"""The Salesforce adapter: Contacts and Leads found with SOSL, calls as completed Call
tasks, missed calls as open tasks with a reminder, unknown callers as Leads or Contacts.

Field names and values are Salesforce's standard ones (Object Reference: Task, Lead,
Contact; SOSL ``IN PHONE FIELDS``); see docs/adapters/salesforce.md.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from adapters.salesforce.api import SalesforceAPI
from adapters.salesforce.settings import SalesforceSettings
from bridge.adapter import CallLog, CheckResult, Contact, FollowUp, JsonAdapter, NewContact
from bridge.call import Call
from bridge.phones import Phone

SUBJECT_MAX = 255  # Task.Subject, CallDisposition, CallObject: 255 characters
PHONE_FIELDS = "Id, Name, OwnerId, Phone, MobilePhone, CreatedDate"
CALL_FIELDS = ("TaskSubtype", "CallType", "CallDurationInSeconds", "CallObject", "CallDisposition")
# SOSL reserved characters, escaped with a backslash inside FIND {…}.
_SOSL_RESERVED = set("?&|!{}[]()^~*:\\\"'+-")


def sosl_term(text: str) -> str:
    return "".join(f"\\{ch}" if ch in _SOSL_RESERVED else ch for ch in text)


def soql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def links(contact: Contact | None, owner: str | None) -> dict[str, str]:
    """A Task's WhoId (the Contact or Lead) and OwnerId, when known."""
    out = {"WhoId": contact.id} if contact is not None else {}
    return out | ({"OwnerId": owner} if owner else {})


def _confirmed(phone: Phone, record: dict[str, Any]) -> bool:
    return any(phone.matches(str(record.get(f) or "")) for f in ("Phone", "MobilePhone"))


class SalesforceAdapter(JsonAdapter[SalesforceSettings, SalesforceAPI]):
    # -- Contacts and Leads ---------------------------------------------------------------

    def search(self, phone: Phone) -> str:
        """SOSL over every phone field; the digits forms, since phone fields are indexed by
        their digits (``+7 (950) 222-29-19`` is found by ``79502222919``)."""
        terms = " OR ".join(sosl_term(t) for t in dict.fromkeys([phone.digits, phone.last10]))
        return (
            f"FIND {{{terms}}} IN PHONE FIELDS RETURNING"
            f" Contact({PHONE_FIELDS} ORDER BY CreatedDate ASC LIMIT 20),"
            f" Lead({PHONE_FIELDS} WHERE IsConverted = false ORDER BY CreatedDate ASC LIMIT 20)"
        )

    async def find_contact(self, phone: Phone) -> Contact | None:
        data = await self.api.call(
            "GET", f"{self.api.data}/search/", "search by phone", params={"q": self.search(phone)}
        )
        hits = [r for r in data.get("searchRecords") or [] if _confirmed(phone, r)]
        if not hits:
            return None
        # A Contact (a customer) wins over a Lead; within each, the oldest (SOSL order).
        kind = lambda r: str((r.get("attributes") or {}).get("type") or "")  # noqa: E731
        first = next((r for r in hits if kind(r) == "Contact"), hits[0])
        return Contact(
            id=str(first["Id"]),
            name=first.get("Name"),
            owner_id=first.get("OwnerId"),
            kind=kind(first).lower() or "contact",
            extra={"matches": len(hits)} if len(hits) > 1 else {},
        )

    async def create_contact(self, new: NewContact) -> Contact:
        name = new.name[:80]  # LastName: 80 characters
        record: dict[str, Any] = {"LastName": name, "Phone": new.phone.e164}
        if self.settings.create_as == "Lead":
            record["Company"] = self.settings.lead_company  # required on a Lead
            if self.settings.lead_source:
                record["LeadSource"] = self.settings.lead_source
        if new.owner_id:
            record["OwnerId"] = new.owner_id
        sobject = self.settings.create_as
        data = await self.api.call(
            "POST", f"{self.api.data}/sobjects/{sobject}/", f"create {sobject}", json=record
        )
        return Contact(id=str(data["id"]), name=name, owner_id=new.owner_id, kind=sobject.lower())

    # -- Tasks ----------------------------------------------------------------------------

    async def _existing(self, call: Call, subtype: str) -> str | None:
        """The Task this call already made (``CallObject`` holds the PBX uuid): a retry after
        a crash between Salesforce's answer and the bridge's booking finds it."""
        soql = (
            f"SELECT Id FROM Task WHERE CallObject = {soql_string(call.uuid)}"
            f" AND TaskSubtype = {soql_string(subtype)} LIMIT 1"
        )
        found = await self.api.query(soql, "find the call's task")
        return str(found[0]["Id"]) if found else None

    def call_task(self, log: CallLog) -> dict[str, Any]:
        c = log.call
        note = self.ctx.texts.render("call_note", c)
        lines = [log.result, note] + ([f"Recording: {c.recording_url}"] if c.recording_url else [])
        task: dict[str, Any] = {
            "Subject": log.title[:SUBJECT_MAX],
            "Status": "Completed",
            "Priority": "Normal",
            "TaskSubtype": "Call",
            "CallType": "Inbound" if c.direction == "inbound" else "Outbound",
            "CallDurationInSeconds": c.talk_seconds,
            "CallObject": c.uuid[:SUBJECT_MAX],
            "CallDisposition": log.result[:SUBJECT_MAX],
            "ActivityDate": c.started_at.astimezone(self.ctx.texts.tz).date().isoformat(),
            "Description": "\n".join(lines),
        }
        return task | links(log.contact, log.user_id)

    async def log_call(self, log: CallLog) -> str:
        return await self._create_task(log.call, self.call_task(log), "create call task")

    def follow_up(self, task: FollowUp) -> dict[str, Any]:
        due = task.due_at  # in working hours, in [schedule]'s zone
        body: dict[str, Any] = {
            "Subject": task.title[:SUBJECT_MAX],
            "Status": "Not Started",
            "Priority": "High",
            "TaskSubtype": "Task",
            "CallObject": task.call.uuid[:SUBJECT_MAX],
            "ActivityDate": due.date().isoformat(),
            "IsReminderSet": True,
            "ReminderDateTime": utc_iso(due),
            "Description": task.description,
        }
        return body | links(task.contact, task.user_id)

    async def create_task(self, task: FollowUp) -> str:
        return await self._create_task(task.call, self.follow_up(task), "create task")

    async def _create_task(self, call: Call, body: dict[str, Any], what: str) -> str:
        existing = await self._existing(call, body["TaskSubtype"])
        if existing:
            return f"task:{existing}"
        data = await self.api.call("POST", f"{self.api.data}/sobjects/Task/", what, json=body)
        return f"task:{data['id']}"

    # -- check ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        [org] = await self.api.query(
            "SELECT Id, Name, OrganizationType, IsSandbox FROM Organization", "organization"
        ) or [{}]
        people = await self.api.query(
            "SELECT Id, Name, Username, Email FROM User"
            " WHERE IsActive = true AND UserType = 'Standard' ORDER BY Name",
            "list users",
        )
        users = [
            (str(u["Id"]), f"{u.get('Name') or '?'} <{u.get('Email') or u.get('Username')}>")
            for u in people
        ]
        notes = [f"instance {await self.api.instance()}, API v{self.settings.api_version}"]
        fields = await self.api.call(
            "GET", f"{self.api.data}/sobjects/Task/describe/", "describe Task"
        )
        creatable = {f["name"] for f in fields.get("fields") or [] if f.get("createable")}
        missing = [f for f in CALL_FIELDS if f not in creatable]
        if missing:
            notes.append(
                f"Task fields the bridge writes but may not: {', '.join(missing)} (give the"
                " Run As user edit access to them)"
            )
        limits = await self.api.call("GET", f"{self.api.data}/limits/", "API limits")
        daily = limits.get("DailyApiRequests") or {}
        if daily:
            notes.append(f"API requests left today: {daily.get('Remaining')} of {daily.get('Max')}")
        kind = " sandbox" if org.get("IsSandbox") else ""
        return CheckResult(
            account=f"Salesforce org {org.get('Name', '?')} ({org.get('OrganizationType', '?')}"
            f"{kind}, {org.get('Id', '?')})",
            users=users,
            notes=notes,
        )
