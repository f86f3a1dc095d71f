"""The Zoho CRM adapter: contacts and leads found by phone, calls in the Calls module, missed
calls as Tasks, unknown callers as a Lead or Contact.

Field API names differ between orgs (renamed, removed or added fields, restricted picklists),
so the adapter reads each module's field metadata once (``GET /crm/v8/settings/fields``) and
writes only fields the org has, with picklist values the org allows; ``check`` lists what is
missing. Request and answer shapes follow Zoho's OpenAPI file ``record.json`` (v8.0), which
the test suite validates every record request and answer against.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from adapters.zoho.api import ZohoAPI, refusal_of
from adapters.zoho.settings import CONCURRENCY, ZohoSettings, data_centre
from bridge.adapter import (
    AdapterContext,
    Answer,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    JsonAdapter,
    NewContact,
    Permanent,
)
from bridge.call import Call
from bridge.phones import Phone

PHONE_FIELDS = ("Phone", "Mobile", "Home_Phone", "Other_Phone", "Asst_Phone")
WRONG_NUMBER_CAUSES = frozenset({"UNALLOCATED_NUMBER", "INVALID_NUMBER_FORMAT", "NUMBER_CHANGED"})
# The default Call_Result picklist of a Zoho org, used only when the org still has the value.
DEFAULT_RESULTS = {
    "busy": "No response/Busy",
    "no_answer": "No response/Busy",
    "missed": "No response/Busy",
    "wrong_number": "Invalid number",
}
KIND = {"Contacts": "contact", "Leads": "lead"}
MODULE = {v: k for k, v in KIND.items()}
# What the adapter writes per module, beside the org's own mandatory fields.
WANTED = {
    "Calls": ("Subject", "Call_Type", "Call_Start_Time", "Call_Duration", "Description",
              "Who_Id", "What_Id", "Owner", "Call_Result", "Voice_Recording__s", "Caller_ID",
              "Dialled_Number"),
    "Tasks": ("Subject", "Due_Date", "Status", "Priority", "Description", "Who_Id", "What_Id",
              "Owner", "Remind_At"),
}  # fmt: skip
FILLED = {  # mandatory fields the adapter can fill, per module
    "Calls": {"Subject", "Call_Type", "Call_Start_Time", "Call_Duration"},
    "Tasks": {"Subject"},
    "Contacts": {"Last_Name"},
    "Leads": {"Last_Name", "Company"},
}
SUBJECT_MAX = 255


def zoho_datetime(moment: datetime) -> str:
    """``2026-05-28T23:24:11+03:00``: ISO 8601 with the offset, as Zoho's datetime fields take
    (never ``Z``)."""
    return moment.isoformat(timespec="seconds")


def duration(seconds: int) -> str:
    """``Call_Duration`` is text ``mm:ss`` (minutes may pass 59)."""
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def result_key(call: Call) -> str:
    if call.outcome == "failed":
        return "wrong_number" if call.hangup_cause in WRONG_NUMBER_CAUSES else "no_answer"
    return call.outcome


def _name(record: dict[str, Any]) -> str | None:
    full = record.get("Full_Name")
    if full:
        return str(full)
    parts = [str(record[k]) for k in ("First_Name", "Last_Name") if record.get(k)]
    return " ".join(parts) or None


class Fields:
    """Each module's field metadata, read once per process (1 credit per module)."""

    def __init__(self, api: ZohoAPI) -> None:
        self._api = api
        self._modules: dict[str, dict[str, dict[str, Any]]] = {}
        self._lock = asyncio.Lock()

    async def of(self, module: str) -> dict[str, dict[str, Any]]:
        async with self._lock:
            if module not in self._modules:
                data = await self._api.call(
                    "GET",
                    "/crm/v8/settings/fields",
                    f"fields of {module}",
                    params={"module": module},
                )
                fields = (data or {}).get("fields") or []
                self._modules[module] = {str(f["api_name"]): f for f in fields if "api_name" in f}
            return self._modules[module]


def picklist_values(field: dict[str, Any] | None) -> list[str]:
    return [str(v.get("actual_value")) for v in (field or {}).get("pick_list_values") or []]


def allowed(field: dict[str, Any] | None, value: str) -> bool:
    return field is not None and value in picklist_values(field)


def writable(fields: dict[str, dict[str, Any]], name: str) -> bool:
    spec = fields.get(name)
    return spec is not None and not spec.get("read_only")


def unfillable(module: str, fields: dict[str, dict[str, Any]]) -> list[str]:
    """The org's mandatory fields of ``module`` that the bridge has no value for."""
    return sorted(
        name
        for name, spec in fields.items()
        if spec.get("system_mandatory") and name not in FILLED.get(module, set())
    )


class ZohoAdapter(JsonAdapter[ZohoSettings, ZohoAPI]):
    def __init__(self, settings: ZohoSettings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self.fields = Fields(self.api)

    # -- contacts and leads ---------------------------------------------------------------

    def _modules(self) -> list[str]:
        return ["Contacts", "Leads"] if self.settings.search_leads else ["Contacts"]

    async def find_contact(self, phone: Phone) -> Contact | None:
        # Zoho's phone search looks in every phone field of the module; how it compares
        # stored formats is not documented, so each hit is confirmed on the number here and
        # the national form is tried when the international one finds nothing.
        forms = [phone.e164] + ([phone.national] if phone.national != phone.e164 else [])
        for module in self._modules():
            for form in forms:
                data = await self.api.call(
                    "GET",
                    f"/crm/v8/{module}/search",
                    f"search {module}",
                    params={"phone": form},
                )
                hits = [
                    r
                    for r in (data or {}).get("data") or []
                    if any(phone.matches(str(r.get(f) or "")) for f in PHONE_FIELDS)
                ]
                if hits:
                    return self._contact(module, hits[0], len(hits))
        return None

    @staticmethod
    def _contact(module: str, record: dict[str, Any], matches: int = 1) -> Contact:
        owner = (record.get("Owner") or {}).get("id")
        return Contact(
            id=str(record["id"]),
            name=_name(record),
            owner_id=str(owner) if owner else None,
            kind=KIND[module],
            extra={"matches": matches} if matches > 1 else {},
        )

    async def create_contact(self, new: NewContact) -> Contact:
        module = self.settings.new_record_module
        what = f"create {module[:-1].lower()}"
        fields = await self.fields.of(module)
        missing = unfillable(module, fields)
        if missing:
            raise Permanent(
                f"cannot create a {module[:-1].lower()} in Zoho: this org makes"
                f" {', '.join(missing)} mandatory and the bridge has no value for it"
                ' (make it optional in the layout, or set create_contacts = "never")'
            )
        record: dict[str, Any] = {"Last_Name": new.name[:80]}
        phone_field = next((f for f in PHONE_FIELDS if f in fields), None)
        if phone_field:
            record[phone_field] = new.phone.e164
        if module == "Leads" and "Company" in fields:
            record["Company"] = (self.settings.lead_company or new.name)[:200]
        if new.owner_id and "Owner" in fields:
            record["Owner"] = {"id": new.owner_id}
        answer = await self.api.request(
            "POST", f"/crm/v8/{module}", what=what, allow=(400,), json={"data": [record]}
        )
        found = refusal_of(answer.body)
        existing = (found.details.get("duplicate_record") or {}) if found else {}
        if found is not None and found.code == "DUPLICATE_DATA" and existing.get("id"):
            # A unique field already holds the number: the record Zoho names is this caller.
            owner = (existing.get("Owner") or {}).get("id")
            return Contact(
                id=str(existing["id"]),
                name=new.name,
                owner_id=str(owner) if owner else new.owner_id,
                kind=KIND[module],
            )
        return Contact(
            id=self._created(answer, what), name=new.name, owner_id=new.owner_id, kind=KIND[module]
        )

    def _created(self, answer: Answer, what: str) -> str:
        self.api.raise_for(answer, what)
        entry = ((answer.object.get("data") or [{}])[0]) or {}
        record_id = (entry.get("details") or {}).get("id")
        if not record_id:
            raise Permanent(f"{what}: Zoho answered without a record id: {str(answer.body)[:200]}")
        return str(record_id)

    # -- calls ----------------------------------------------------------------------------

    @staticmethod
    def _link(record: dict[str, Any], contact: Contact | None) -> None:
        """A contact is the call's/task's ``Who_Id``; a lead is its ``What_Id`` ("Related
        To") with ``$se_module``, since Who_Id points at Contacts only."""
        if contact is None:
            return
        if contact.kind == "lead":
            record["What_Id"] = {"id": contact.id}
            record["$se_module"] = "Leads"
        else:
            record["Who_Id"] = {"id": contact.id}

    def _call_type(self, call: Call, spec: dict[str, Any] | None) -> str:
        if call.direction == "outbound":
            return "Outbound"
        if not call.answered and allowed(spec, "Missed"):
            return "Missed"
        return "Inbound"

    async def call_record(self, log: CallLog) -> dict[str, Any]:
        c = log.call
        fields = await self.fields.of("Calls")
        note = self.ctx.texts.render("call_note", c)
        lines = [log.result, note]
        record: dict[str, Any] = {
            "Subject": log.title[:SUBJECT_MAX],
            "Call_Type": self._call_type(c, fields.get("Call_Type")),
            "Call_Start_Time": zoho_datetime(c.started_at),
            "Call_Duration": duration(c.talk_seconds),
        }
        result = self.settings.call_results.get(result_key(c)) or DEFAULT_RESULTS.get(result_key(c))
        if result and allowed(fields.get("Call_Result"), result):
            record["Call_Result"] = result
        client = c.client.e164 if c.client else c.client_raw
        number_field = "Caller_ID" if c.direction == "inbound" else "Dialled_Number"
        if client and writable(fields, number_field):
            record[number_field] = client
        if c.recording_url:
            if writable(fields, "Voice_Recording__s"):
                record["Voice_Recording__s"] = c.recording_url
            lines.append(f"Recording: {c.recording_url}")
        if log.user_id and writable(fields, "Owner"):
            record["Owner"] = {"id": log.user_id}
        self._link(record, log.contact)
        record["Description"] = "\n".join(x for x in lines if x)
        return self._keep_known("Calls", fields, record, c)

    def _keep_known(
        self, module: str, fields: dict[str, dict[str, Any]], record: dict[str, Any], call: Call
    ) -> dict[str, Any]:
        key = self.settings.call_id_field
        if key and writable(fields, key):
            record[key] = f"{call.domain}/{call.uuid}"
        lookups = {"Who_Id", "What_Id"}
        kept = {
            k: v
            for k, v in record.items()
            if k == "$se_module" or (k in fields and not fields[k].get("read_only"))
        }
        if "What_Id" not in kept:
            kept.pop("$se_module", None)
        if "Description" in kept and any(k in record and k not in kept for k in lookups):
            # The org removed the lookup: the record would lose its contact, say so in it.
            kept["Description"] = kept.get("Description", "") + "\n(contact link not possible)"
        return kept

    async def _write(self, module: str, record: dict[str, Any], what: str) -> str:
        key = self.settings.call_id_field
        path, body = f"/crm/v8/{module}", {"data": [record]}
        if key and key in record:
            # The PBX call id in a unique field: an upsert updates the record a crash left
            # unbooked instead of creating a second one.
            path, body = f"{path}/upsert", {**body, "duplicate_check_fields": [key]}
        answer = await self.api.request("POST", path, what=what, json=body)
        return self._created(answer, what)

    async def log_call(self, log: CallLog) -> str:
        record = await self.call_record(log)
        return f"call:{await self._write('Calls', record, 'create call')}"

    # -- tasks ----------------------------------------------------------------------------

    async def task_record(self, task: FollowUp) -> dict[str, Any]:
        fields = await self.fields.of("Tasks")
        s = self.settings
        record: dict[str, Any] = {
            "Subject": task.title[:SUBJECT_MAX],
            "Due_Date": task.due_at.date().isoformat(),
            "Description": task.description,
        }
        if allowed(fields.get("Status"), s.task_status):
            record["Status"] = s.task_status
        if allowed(fields.get("Priority"), s.task_priority):
            record["Priority"] = s.task_priority
        if s.task_reminder:
            # A task has a due date only: the reminder carries the due time (working hours).
            record["Remind_At"] = {
                "ALARM": f"FREQ=NONE;ACTION=EMAILANDPOPUP;TRIGGER=DATE-TIME:"
                f"{zoho_datetime(task.due_at)}"
            }
        if task.user_id:
            record["Owner"] = {"id": task.user_id}
        self._link(record, task.contact)
        return self._keep_known("Tasks", fields, record, task.call)

    async def create_task(self, task: FollowUp) -> str:
        record = await self.task_record(task)
        return f"task:{await self._write('Tasks', record, 'create task')}"

    # -- check ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        s = self.settings
        org = (
            (await self.api.call("GET", "/crm/v8/org", "organization") or {}).get("org") or [{}]
        )[0]
        users: list[tuple[str, str]] = []
        page = 1
        while True:
            data = (
                await self.api.call(
                    "GET",
                    "/crm/v8/users",
                    "list users",
                    params={"type": "ActiveUsers", "page": page, "per_page": 200},
                )
                or {}
            )
            for u in data.get("users") or []:
                label = u.get("full_name") or "?"
                if u.get("email"):
                    label = f"{label} <{u['email']}>"
                users.append((str(u["id"]), label))
            if not (data.get("info") or {}).get("more_records"):
                break
            page += 1
        domain = await self.api.api_domain()
        dc = data_centre(s.accounts_url)
        notes = [
            f"credentials: {self.api.auth.describe() if self.api.auth else '?'}",
            f"API at {domain}" + (f" ({dc[0]} data centre)" if dc else ""),
            f"API credits assumed: {s.daily_credits} per 24 h ({s.edition}, {s.user_licenses}"
            f" user licence(s)); Zoho allows {CONCURRENCY[s.edition]} concurrent calls",
        ]
        notes.extend(await self._field_notes())
        return CheckResult(
            account=(
                f"Zoho CRM org {org.get('company_name', '?')} (id {org.get('id', '?')},"
                f" {((org.get('license_details') or {}).get('paid_type') or s.edition)})"
            ),
            users=users,
            notes=notes,
        )

    async def _field_notes(self) -> list[str]:
        notes: list[str] = []
        for module in ("Calls", "Tasks", self.settings.new_record_module):
            fields = await self.fields.of(module)
            for name in WANTED.get(module, ()):
                if name not in fields:
                    notes.append(f"{module} has no field {name}: it is left out")
            missing = unfillable(module, fields)
            if missing:
                notes.append(
                    f"{module}: mandatory field(s) {', '.join(missing)} have no value from"
                    " the bridge: writes will be refused until they are optional"
                )
        calls = await self.fields.of("Calls")
        if "Call_Type" in calls and not allowed(calls["Call_Type"], "Missed"):
            notes.append("Calls.Call_Type has no 'Missed': missed calls are logged as Inbound")
        if "Voice_Recording__s" not in calls:
            notes.append("recording links go into the call's Description")
        key = self.settings.call_id_field
        if key:
            for module in ("Calls", "Tasks"):
                if key not in await self.fields.of(module):
                    notes.append(
                        f"{module} has no field {key} (call_id_field): writes are plain inserts"
                    )
        return notes
