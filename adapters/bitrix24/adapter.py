"""``bitrix24``: calls through ``telephony.externalCall.*``, missed calls as to-dos or tasks.

Official method pages (github.com/bitrix24/b24restdocs, api-reference/…):
telephony.externalCall.searchCrmEntities / register / finish / attachRecord,
crm.duplicate.findbycomm, crm.lead.add, crm.activity.todo.add, crm.activity.add,
tasks.task.add, voximplant.statistic.get, profile, user.get.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from bridge.adapter import (
    LOG_CALL,
    Adapter,
    AdapterContext,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    NewContact,
    Permanent,
    RetryLater,
    Skipped,
    user_number,
)
from bridge.call import CALL_END, INBOUND, Call
from bridge.phones import Phone

from .api import Bitrix24API, Bitrix24Error, TelephonyRefused
from .settings import Bitrix24Settings

# CRM object type ids (crm data types, "object_type") and the UF_CRM_TASK prefixes.
OWNER_TYPE_ID = {"LEAD": 1, "CONTACT": 3, "COMPANY": 4}
TASK_LINK_PREFIX = {"LEAD": "L", "CONTACT": "C", "COMPANY": "CO"}
PREFERENCE = ("CONTACT", "COMPANY", "LEAD")  # which record a call belongs to, when several
GET_METHOD = {"CONTACT": "crm.contact.get", "COMPANY": "crm.company.get", "LEAD": "crm.lead.get"}

# telephony.externalCall.finish STATUS_CODE per onlinePBX hangup cause, when nobody talked.
FAILED_STATUS = {
    "USER_BUSY": "486",
    "CALL_REJECTED": "603",
    "UNALLOCATED_NUMBER": "404",
    "INVALID_NUMBER_FORMAT": "404",
    "NUMBER_CHANGED": "404",
    "NO_ROUTE_DESTINATION": "484",
    "DESTINATION_OUT_OF_ORDER": "503",
    "SUBSCRIBER_ABSENT": "480",
    "ORIGINATOR_CANCEL": "603-S",
}

# CallState names (per call) and AdapterState keys.
CALL_ID = "b24.call_id"
CALL_USER = "b24.call_user"
FINISHED = "b24.finished"
RECORD = "b24.record"
REFUSED = "telephony_refused:{kind}"

MAX_CONFIRM = 5  # crm.*.get calls to confirm findbycomm hits


def status_code(call: Call) -> str:
    if call.answered:
        return "200"
    if call.missed:
        return "304"
    code = FAILED_STATUS.get(call.hangup_cause)
    if code:
        return code
    return "304" if call.direction == INBOUND else "480"


def _int_id(value: str, what: str) -> int:
    # Ids from the settings are numbers (USER_IDS, checked at load); the fallback user comes
    # from the webhook URL or `profile`.
    number = user_number(value)
    if number is None:
        raise Permanent(f"no {what} for this call: set default_user")
    return number


def _name(record: dict[str, Any], entity: str) -> str | None:
    if entity == "COMPANY":
        return record.get("TITLE") or None
    full = " ".join(str(record.get(k) or "").strip() for k in ("NAME", "LAST_NAME")).strip()
    return full or record.get("TITLE") or None


def _entity(contact: Contact) -> str:
    return str(contact.extra.get("entity_type") or contact.kind).upper()


class Bitrix24Adapter(Adapter):
    Settings = Bitrix24Settings
    settings: Bitrix24Settings

    def __init__(self, settings: Bitrix24Settings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self.api = Bitrix24API(settings, ctx)
        self._refused = False
        self._me: str | None = None

    async def setup(self) -> None:
        self._refused = bool(await self.ctx.state.get(self._refused_key))

    @property
    def _refused_key(self) -> str:
        return REFUSED.format(kind=self.settings.auth_kind)

    # --- which way calls are written ----------------------------------------------------

    def _telephony(self) -> bool:
        mode = self.settings.call_log
        return mode == "telephony" or (mode == "auto" and not self._refused)

    async def _telephony_refused(self, exc: TelephonyRefused) -> None:
        """Remember that this portal refuses telephony.externalCall.* to this auth type."""
        if self.settings.call_log != "auto":
            raise exc
        self._refused = True
        await self.ctx.state.put(self._refused_key, exc.method)
        self.ctx.log.warning(
            "Bitrix24 refuses telephony.externalCall.* for this setup (WRONG_AUTH_TYPE);"
            " calls are written as CRM call activities from now on (see docs/adapters/bitrix24.md)",
            auth=self.settings.auth_kind,
        )

    async def _fallback_user(self) -> str:
        """The webhook's own user, or the OAuth app's user (``profile``)."""
        parts = self.settings.webhook_parts
        if parts:
            return parts[0]
        if self._me is None:
            me = await self.api.result("profile")
            self._me = str((me or {}).get("ID") or "") or None
            if self._me is None:
                raise Permanent("profile returned no user id: set default_user")
        return self._me

    # --- find / create --------------------------------------------------------------------

    async def find_contact(self, phone: Phone) -> Contact | None:
        try:
            rows = await self.api.result(
                "telephony.externalCall.searchCrmEntities", {"PHONE_NUMBER": phone.digits}
            )
        except Permanent as exc:
            # e.g. no telephony scope: the CRM duplicate index still answers.
            self.ctx.log.info(
                "searchCrmEntities refused; trying crm.duplicate.findbycomm", reason=exc.reason
            )
            rows = None
        if rows:
            rows = sorted(
                (r for r in rows if isinstance(r, dict) and r.get("CRM_ENTITY_TYPE") in PREFERENCE),
                key=lambda r: PREFERENCE.index(r["CRM_ENTITY_TYPE"]),
            )
        if rows:
            # Bitrix24 matched on its normalized phone index; the answer carries no phone.
            row = rows[0]
            entity = row["CRM_ENTITY_TYPE"]
            owner = row.get("ASSIGNED_BY_ID") or (row.get("ASSIGNED_BY") or {}).get("ID")
            return Contact(
                id=str(row["CRM_ENTITY_ID"]),
                name=row.get("NAME") or None,
                owner_id=str(owner) if owner else None,
                kind=entity.lower(),
                extra={"entity_type": entity},
            )
        return await self._find_by_comm(phone)

    async def _find_by_comm(self, phone: Phone) -> Contact | None:
        found = await self.api.result(
            "crm.duplicate.findbycomm", {"type": "PHONE", "values": phone.variants()[:20]}
        )
        if not isinstance(found, dict):  # an empty answer is `[]`
            return None
        tries = 0
        for entity in PREFERENCE:
            for record_id in found.get(entity) or []:
                if tries >= MAX_CONFIRM:
                    return None
                tries += 1
                record = await self.api.result(GET_METHOD[entity], {"id": record_id})
                if not isinstance(record, dict):
                    continue
                phones = [
                    p.get("VALUE", "") for p in record.get("PHONE") or [] if isinstance(p, dict)
                ]
                if not any(phone.matches(str(v)) for v in phones):
                    continue
                owner = record.get("ASSIGNED_BY_ID")
                return Contact(
                    id=str(record_id),
                    name=_name(record, entity),
                    owner_id=str(owner) if owner else None,
                    kind=entity.lower(),
                    extra={"entity_type": entity},
                )
        return None

    async def create_contact(self, new: NewContact) -> Contact:
        phone, call, name = new.phone, new.call, new.name
        user = new.owner_id or await self._fallback_user()
        if (
            self.settings.lead_creation == "register"
            and call.event == CALL_END
            and LOG_CALL in self.settings.events
            and self._telephony()
        ):
            try:
                reg = await self._register(call, user, None, crm_create=True)
            except TelephonyRefused as exc:
                await self._telephony_refused(exc)
            else:
                # The registration belongs to this call, not to the contact: the core caches
                # the contact for the next calls from this number (a CALL_ID in Contact.extra
                # made them finish this call instead of registering their own).
                await new.state.put(CALL_ID, reg["CALL_ID"])
                await new.state.put(CALL_USER, user)
                created = self._created_entity(reg)
                if created is not None:
                    entity, entity_id = created
                    return Contact(
                        str(entity_id), name, user, entity.lower(), {"entity_type": entity}
                    )
                self.ctx.log.warning(
                    "register with CRM_CREATE=1 created no CRM record; adding a lead",
                    error=reg.get("LEAD_CREATION_ERROR"),
                )
                return await self._lead_add(phone, user, name, call)
        return await self._lead_add(phone, user, name, call)

    @staticmethod
    def _created_entity(reg: dict[str, Any]) -> tuple[str, Any] | None:
        if reg.get("CRM_CREATED_LEAD"):
            return "LEAD", reg["CRM_CREATED_LEAD"]
        for item in reg.get("CRM_CREATED_ENTITIES") or []:
            if isinstance(item, dict) and item.get("ENTITY_TYPE") in OWNER_TYPE_ID:
                return item["ENTITY_TYPE"], item["ENTITY_ID"]
        if reg.get("CRM_ENTITY_TYPE") in OWNER_TYPE_ID and reg.get("CRM_ENTITY_ID"):
            return reg["CRM_ENTITY_TYPE"], reg["CRM_ENTITY_ID"]
        return None

    async def _lead_add(self, phone: Phone, user: str, name: str, call: Call) -> Contact:
        lead_id = await self.api.result(
            "crm.lead.add",
            {
                "fields": {
                    "TITLE": name,
                    "PHONE": [{"VALUE": phone.e164, "VALUE_TYPE": "WORK"}],
                    "ASSIGNED_BY_ID": _int_id(user, "responsible user"),
                    "SOURCE_ID": self.settings.lead_source,
                    "SOURCE_DESCRIPTION": self.ctx.texts.call_title(call),
                },
                "params": {"REGISTER_SONET_EVENT": "Y"},
            },
        )
        if not lead_id:
            raise RetryLater("crm.lead.add answered without a lead id")
        return Contact(str(lead_id), name, user, "lead", {"entity_type": "LEAD"})

    # --- call log ---------------------------------------------------------------------------

    def _iso(self, when: datetime) -> str:
        return when.astimezone(self.ctx.texts.tz).isoformat(timespec="seconds")

    async def _register(
        self, call: Call, user: str, contact: Contact | None, *, crm_create: bool
    ) -> dict[str, Any]:
        assert call.client is not None
        params: dict[str, Any] = {
            "USER_ID": _int_id(user, "user"),
            "PHONE_NUMBER": call.client.digits,
            "TYPE": 2 if call.direction == INBOUND else 1,
            "CALL_START_DATE": self._iso(call.started_at),
            "CRM_CREATE": 1 if crm_create else 0,
            "SHOW": 0,
            "ADD_TO_CHAT": 1 if self.settings.add_to_chat else 0,
            "EXTERNAL_CALL_ID": call.uuid,
        }
        if crm_create:
            params["CRM_SOURCE"] = self.settings.lead_source
        if call.gateway:
            params["LINE_NUMBER"] = call.gateway
        if contact is not None:
            params["CRM_ENTITY_TYPE"] = _entity(contact)
            params["CRM_ENTITY_ID"] = int(contact.id)
        reg = await self.api.result("telephony.externalCall.register", params)
        if not isinstance(reg, dict) or not reg.get("CALL_ID"):
            raise RetryLater("telephony.externalCall.register answered without a CALL_ID")
        return reg

    async def log_call(self, log: CallLog) -> str:
        user = log.user_id or await self._fallback_user()
        if not self._telephony():
            return await self._activity(log, user)
        state, call, contact = log.state, log.call, log.contact
        call_id = await state.get(CALL_ID)
        call_user = await state.get(CALL_USER) or user
        for _ in range(2):
            if not call_id:
                try:
                    reg = await self._register(call, user, contact, crm_create=False)
                except TelephonyRefused as exc:
                    await self._telephony_refused(exc)
                    return await self._activity(log, user)
                call_id, call_user = reg["CALL_ID"], user
            # Remembered before finishing: a retry finishes this call, never registers another.
            await state.put(CALL_ID, call_id)
            await state.put(CALL_USER, call_user)
            if await state.get(FINISHED):
                break
            finished = await self._finish(call, call_id, call_user)
            if finished is not None:
                await state.put(FINISHED, finished)
                break
            call_id = ""  # registration vanished and was never finished: register again
        else:
            raise RetryLater("telephony.externalCall.finish: the call could not be found twice")
        if call.recording_url and self.settings.attach_records and not await state.get(RECORD):
            await state.put(RECORD, await self._attach(call, call_id))
        return str(call_id)

    async def _finish(self, call: Call, call_id: str, user: str) -> str | None:
        params: dict[str, Any] = {
            "CALL_ID": call_id,
            "USER_ID": _int_id(user, "user"),
            "DURATION": call.talk_seconds,
            "STATUS_CODE": status_code(call),
            "ADD_TO_CHAT": 1 if self.settings.add_to_chat else 0,
        }
        if not call.answered and call.hangup_cause:
            params["FAILED_REASON"] = call.hangup_cause
        try:
            done = await self.api.result("telephony.externalCall.finish", params)
        except TelephonyRefused:
            raise
        except Bitrix24Error as exc:
            if "call is not found" not in exc.description.lower():
                raise
            # An earlier finish may have worked with its answer lost: the statistics know.
            stats = await self.api.result(
                "voximplant.statistic.get", {"FILTER": {"CALL_ID": call_id}}
            )
            if isinstance(stats, list) and stats:
                return str(stats[0].get("ID") or call_id)
            self.ctx.log.warning("registered call vanished before finish; registering again")
            return None
        if isinstance(done, dict):
            return str(done.get("ID") or done.get("CRM_ACTIVITY_ID") or call_id)
        return str(call_id)

    async def _attach(self, call: Call, call_id: str) -> str:
        assert call.recording_url is not None
        filename = re.sub(r"[^\w.-]", "_", call.uuid) + ".mp3"
        try:
            got = await self.api.result(
                "telephony.externalCall.attachRecord",
                {"CALL_ID": call_id, "RECORD_URL": call.recording_url, "FILENAME": filename},
            )
        except Bitrix24Error as exc:
            low = exc.description.lower()
            if "not finished yet" in low:
                raise RetryLater(exc.reason) from None
            if "server returns http error" in low or "non-public" in low:
                # onlinePBX links expire after ~30 minutes: the call stays logged without it.
                self.ctx.log.warning("recording not attached", reason=exc.reason)
                return "unavailable"
            raise
        file_id = got.get("FILE_ID") if isinstance(got, dict) else None
        return f"file:{file_id}" if file_id else "attached"

    async def _activity(self, log: CallLog, user: str) -> str:
        """crm.activity.add of TYPE_ID 2 (call): the fallback when telephony is refused."""
        call, contact = log.call, log.contact
        if contact is None or call.client is None:
            return Skipped("no CRM record for this number (a CRM call activity needs one)")
        entity = _entity(contact)
        lines = [log.result, self.ctx.texts.render("call_note", call)]
        if call.recording_url:
            lines.append(call.recording_url)
        activity_id = await self.api.result(
            "crm.activity.add",
            {
                "fields": {
                    "OWNER_TYPE_ID": OWNER_TYPE_ID[entity],
                    "OWNER_ID": int(contact.id),
                    "TYPE_ID": 2,
                    "COMMUNICATIONS": [
                        {
                            "VALUE": call.client.e164,
                            "ENTITY_ID": int(contact.id),
                            "ENTITY_TYPE_ID": OWNER_TYPE_ID[entity],
                        }
                    ],
                    "SUBJECT": log.title,
                    "START_TIME": self._iso(call.started_at),
                    "END_TIME": self._iso(call.ended_at),
                    "COMPLETED": "Y",
                    "DIRECTION": 1 if call.direction == INBOUND else 2,
                    "RESPONSIBLE_ID": _int_id(user, "user"),
                    "DESCRIPTION": "\n".join(lines),
                    "DESCRIPTION_TYPE": 1,
                    "ORIGINATOR_ID": "pbx-bridge",
                    "ORIGIN_ID": call.uuid,
                }
            },
        )
        if not activity_id:
            raise RetryLater("crm.activity.add answered without an activity id")
        return f"activity:{activity_id}"

    # --- missed calls -----------------------------------------------------------------------

    async def create_task(self, task: FollowUp) -> str:
        user = _int_id(task.user_id or await self._fallback_user(), "user")
        contact = task.contact
        if self.settings.task_kind == "todo" and contact is not None:
            entity = _entity(contact)
            got = await self.api.result(
                "crm.activity.todo.add",
                {
                    "ownerTypeId": OWNER_TYPE_ID[entity],
                    "ownerId": int(contact.id),
                    "deadline": task.due_at.isoformat(timespec="seconds"),
                    "title": task.title,
                    "description": task.description,
                    "responsibleId": user,
                    "pingOffsets": self.settings.ping_offsets,
                },
            )
            todo_id = got.get("id") if isinstance(got, dict) else None
            if not todo_id:
                raise RetryLater("crm.activity.todo.add answered without an id")
            return f"todo:{todo_id}"
        # A task: asked for, or a to-do has no CRM record to live on.
        fields: dict[str, Any] = {
            "TITLE": task.title,
            "DESCRIPTION": task.description,
            "DEADLINE": task.due_at.isoformat(timespec="seconds"),
            "RESPONSIBLE_ID": user,
        }
        if contact is not None:
            fields["UF_CRM_TASK"] = [f"{TASK_LINK_PREFIX[_entity(contact)]}_{contact.id}"]
        got = await self.api.result("tasks.task.add", {"fields": fields})
        task_id = ((got or {}).get("task") or {}).get("id") if isinstance(got, dict) else None
        if not task_id:
            raise RetryLater("tasks.task.add answered without a task id")
        return f"task:{task_id}"

    # --- check ------------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        me = await self.api.result("profile") or {}
        who = " ".join(str(me.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
        account = f"{self.settings.portal()} (as {who or 'user'} #{me.get('ID')}"
        account += ", admin)" if me.get("ADMIN") else ")"
        users: list[tuple[str, str]] = []
        start: int | None = 0
        pages = 0
        while start is not None and pages < 20:
            page = await self.api.envelope("user.get", {"filter": {"ACTIVE": True}, "start": start})
            for u in page.get("result") or []:
                name = " ".join(str(u.get(k) or "") for k in ("NAME", "LAST_NAME")).strip()
                inner = u.get("UF_PHONE_INNER")
                label = (name or str(u.get("EMAIL") or "")) + (f" (ext. {inner})" if inner else "")
                users.append((str(u.get("ID")), label))
            nxt = page.get("next")
            start = int(nxt) if isinstance(nxt, int | str) and str(nxt).isdigit() else None
            pages += 1
        notes = [f"auth: {'inbound webhook' if self.settings.webhook_parts else 'OAuth app'}"]
        if self.settings.call_log == "activity":
            notes.append('calls are written as CRM call activities (call_log = "activity")')
        elif self._refused:
            notes.append(
                "this portal refused telephony.externalCall.* to this setup (WRONG_AUTH_TYPE):"
                " calls are written as CRM call activities; an OAuth app gets the telephony log"
            )
        else:
            notes.append("calls go through telephony.externalCall.register/finish")
        return CheckResult(account=account, users=users, notes=notes)

    async def aclose(self) -> None:
        await self.api.aclose()
