"""``bitrix24``: calls through ``telephony.externalCall.*``, missed calls as to-dos or tasks.

Official method pages (github.com/bitrix24/b24restdocs, api-reference/…):
telephony.externalCall.searchCrmEntities / register / show / hide / finish / attachRecord,
telephony.externalLine.add,
crm.duplicate.findbycomm, crm.lead.add, crm.activity.todo.add, crm.activity.add,
tasks.task.add, voximplant.statistic.get, profile, user.get.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.adapter import (
    CREATE_TASK,
    LOG_CALL,
    AdapterContext,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    JsonAdapter,
    KeyLocks,
    LiveCall,
    NewContact,
    Permanent,
    RetryLater,
    Skipped,
    user_number,
)
from bridge.call import CALL_END, CALL_MISSED, INBOUND, Call
from bridge.phones import Phone

from .api import Bitrix24API, Bitrix24Error, TelephonyRefused
from .settings import Bitrix24Settings

if TYPE_CHECKING:
    from bridge.store.state import CallState  # the per-call records of CallLog.state & co.

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
CALL_ID = "b24.call_id"  # the registration of this call ("" once it vanished)
CALL_USER = "b24.call_user"  # the user it was registered for
# Written before the first register: every register of the call sends this USER_ID, so a
# repeat after a crash matches the first (Bitrix24 returns the same CALL_ID within 30 minutes
# for the same PHONE_NUMBER, TYPE, USER_ID, LINE_NUMBER and EXTERNAL_CALL_ID).
REG_USER = "b24.reg_user"
CREATED = "b24.created"  # [entity, id] that register's CRM_CREATE made
SHOWN = "b24.shown"  # user ids the card is shown to now (JSON list)
ANSWERED_BY = "b24.answered_by"
FINISHED = "b24.finished"
RECORD = "b24.record"
REFUSED = "telephony_refused:{kind}"
LINE = "line:{kind}:{number}"  # AdapterState: the line was added with telephony.externalLine.add
NO_TELEPHONY_SCOPE = ("insufficient_scope", "ERROR_METHOD_NOT_FOUND")
REFUSED_LIVE = (
    "this portal refuses telephony.externalCall.* to an inbound webhook (WRONG_AUTH_TYPE): no"
    " live card; calls are logged as CRM call activities (use an OAuth app for cards)"
)

MAX_CONFIRM = 5  # crm.*.get calls to confirm findbycomm hits


def status_code(call: Call) -> str:
    if call.answered:
        return "200"
    if call.direction == INBOUND:
        # Nobody took it (call_missed, or a call_end without talk time whatever the cause:
        # the caller gave up, every extension was busy…): Bitrix24's own "missed", which its
        # statistics count and its missed-call lead rules act on. The cause goes in
        # FAILED_REASON.
        return "304"
    return FAILED_STATUS.get(call.hangup_cause, "480")


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


def one_at_a_time(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """Steps of one call never overlap in this process: two rings registering at once would
    register two calls (different USER_IDs). The core runs a call's jobs in order anyway; this
    holds even where it does not (a worker with concurrency > 1 on an older core)."""

    @functools.wraps(method)
    async def run(self: Bitrix24Adapter, item: Any) -> Any:
        async with self._call_locks.hold(item.call.key):
            return await method(self, item)

    return run


class Bitrix24Adapter(JsonAdapter[Bitrix24Settings, Bitrix24API]):
    def __init__(self, settings: Bitrix24Settings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self._refused = False
        self._me: str | None = None
        self._lines: set[str] = set()  # lines known to be added (or not addable) this run
        self._no_live: str | None = None  # why live cards cannot work with this setup
        self._call_locks = KeyLocks()

    # Bitrix24 finds the CRM record by the number itself when a call is registered (and shows
    # it on the card): no lookup request before the card.
    live_lookup = False

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

    def _logs_call(self, call: Call) -> bool:
        """This event's post-call job writes the call into telephony (register + finish)."""
        if not self._telephony():
            return False
        events = self.settings.events
        return (call.event == CALL_END and LOG_CALL in events) or (
            call.event == CALL_MISSED and CREATE_TASK in events
        )

    @one_at_a_time
    async def create_contact(self, new: NewContact) -> Contact:
        phone, call, name, state = new.phone, new.call, new.name, new.state
        user = new.owner_id or await self._fallback_user()
        created = await state.get(CREATED)
        if created:  # the ring's register made it (CRM_CREATE=1)
            entity, entity_id = json.loads(created)
            return Contact(str(entity_id), name, user, entity.lower(), {"entity_type": entity})
        if (
            self.settings.lead_creation == "register"
            and self._logs_call(call)
            and not await state.get(CALL_ID)  # registered (live) without creating: too late
        ):
            try:
                reg, user = await self._register(call, user, None, state, crm_create=True)
            except TelephonyRefused as exc:
                await self._telephony_refused(exc)
            else:
                # The registration belongs to this call, not to the contact: the core caches
                # the contact for the next calls from this number (a CALL_ID in Contact.extra
                # made them finish this call instead of registering their own).
                found = self._created_entity(reg)
                if found is not None:
                    entity, entity_id = found
                    return Contact(
                        str(entity_id), name, user, entity.lower(), {"entity_type": entity}
                    )
                self.ctx.log.warning(
                    "register with CRM_CREATE=1 created no CRM record; adding a lead",
                    error=reg.get("LEAD_CREATION_ERROR"),
                )
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

    def _creates_lead(self, call: Call) -> bool:
        """CRM_CREATE for a registration made while the call rings (the post-call policy)."""
        policy = self.settings.create_contacts
        allowed = policy == "always" or (policy == "inbound" and call.direction == INBOUND)
        return allowed and self.settings.lead_creation == "register"

    async def _line(self, number: str) -> None:
        """Add the onlinePBX line to the app once (``telephony.externalLine.add``), so calls
        registered with its LINE_NUMBER are bound to it in telephony reports."""
        name = LINE.format(kind=self.settings.auth_kind, number=number)
        if not number or name in self._lines or await self.ctx.state.get(name):
            self._lines.add(name)
            return
        # CRM_AUTO_CREATE: the line's own lead creation for outgoing calls, as the policy says.
        auto = self.settings.create_contacts == "always"
        auto = auto and self.settings.lead_creation == "register"
        line = {"NUMBER": number, "NAME": f"onlinePBX {number}"}
        try:
            got = await self.api.result(
                "telephony.externalLine.add", {**line, "CRM_AUTO_CREATE": "Y" if auto else "N"}
            )
        except TelephonyRefused:
            raise
        except Bitrix24Error as exc:
            if "already exists" not in exc.description.lower():
                # Recommended, not required: the call is still registered with its number.
                self.ctx.log.warning("external line not added", line=number, reason=exc.reason)
                self._lines.add(name)
                return
            got = None
        line_id = got.get("ID") if isinstance(got, dict) else None
        await self.ctx.state.put(name, str(line_id or "exists"))
        self._lines.add(name)

    async def _register(
        self,
        call: Call,
        user: str,
        contact: Contact | None,
        state: CallState,
        *,
        crm_create: bool,
        show: bool = False,
    ) -> tuple[dict[str, Any], str]:
        """Register the call (or find its registration again); ``(answer, USER_ID used)``.
        The CALL_ID is in ``state`` when this returns."""
        assert call.client is not None
        user = await state.get(REG_USER) or user
        await state.put(REG_USER, user)  # before the request: a repeat must match it
        await self._line(call.gateway)
        params: dict[str, Any] = {
            "USER_ID": _int_id(user, "user"),
            "PHONE_NUMBER": call.client.digits,
            "TYPE": 2 if call.direction == INBOUND else 1,
            "CALL_START_DATE": self._iso(call.started_at),
            "CRM_CREATE": 1 if crm_create else 0,
            "SHOW": 1 if show else 0,
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
        try:
            reg = await self.api.result("telephony.externalCall.register", params)
        except TelephonyRefused:
            raise
        except Bitrix24Error:
            await state.put(REG_USER, "")  # refused (a bad user): not a registration to match
            raise
        if not isinstance(reg, dict) or not reg.get("CALL_ID"):
            raise RetryLater("telephony.externalCall.register answered without a CALL_ID")
        await state.put(CALL_ID, str(reg["CALL_ID"]))
        await state.put(CALL_USER, user)
        if reg.get("CRM_CREATED_LEAD") or reg.get("CRM_CREATED_ENTITIES"):
            made = self._created_entity(reg)
            if made is not None:
                await state.put(CREATED, json.dumps([made[0], str(made[1])]))
        return reg, user

    @one_at_a_time
    async def log_call(self, log: CallLog) -> str | Skipped:
        user = log.user_id or await self._fallback_user()
        if not self._telephony():
            return await self._activity(log, user)
        call_id = await self._telephony_log(log.call, user, log.contact, log.state)
        if call_id is None:  # refused just now
            return await self._activity(log, user)
        state, call = log.state, log.call
        if call.recording_url and self.settings.attach_records and not await state.get(RECORD):
            await state.put(RECORD, await self._attach(call, call_id))
        return call_id

    async def _telephony_log(
        self, call: Call, user: str, contact: Contact | None, state: CallState
    ) -> str | None:
        """The call registered (once: the ring's registration if there was one) and finished;
        its CALL_ID, or None when the portal refuses telephony to this setup."""
        call_id = await state.get(CALL_ID)
        for _ in range(2):
            if not call_id:
                try:
                    reg, _user = await self._register(call, user, contact, state, crm_create=False)
                except TelephonyRefused as exc:
                    await self._telephony_refused(exc)
                    return None
                call_id = str(reg["CALL_ID"])
            if await state.get(FINISHED):
                return call_id
            finished = await self._finish(call, call_id, user)
            if finished is not None:
                await state.put(FINISHED, finished)
                return call_id
            # The registration vanished and was never finished: register again.
            call_id = ""
            await state.put(CALL_ID, "")
        raise RetryLater("telephony.externalCall.finish: the call could not be found twice")

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
            # An earlier finish may have worked with its answer lost (or a crash came before
            # it was recorded): the statistics know. Needs "Call statistics — View".
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

    # --- live: the card while the phone rings ----------------------------------------------

    async def _shown(self, state: CallState) -> set[int]:
        raw = await state.get(SHOWN)
        return {int(u) for u in json.loads(raw)} if raw else set()

    async def _show(self, state: CallState, call_id: str, users: set[int]) -> bool:
        done = await self.api.result(
            "telephony.externalCall.show", {"CALL_ID": call_id, "USER_ID": sorted(users)}
        )
        if done is False:  # "false — call not found": finished (or never there)
            return False
        await state.put(SHOWN, json.dumps(sorted(await self._shown(state) | users)))
        return True

    def _live_refusal(self) -> str | None:
        if not self._telephony():
            return REFUSED_LIVE
        return self._no_live

    @one_at_a_time
    async def ringing(self, live: LiveCall) -> str | Skipped:
        """First ring: register with SHOW=1 for the ringing user; later rings (a ring group):
        show the same call's card to each further user."""
        refused = self._live_refusal()
        if refused:
            return Skipped(refused)
        if live.user_id is None:
            return Skipped(
                f"extension {live.extension} has no Bitrix24 user (users map, default_user):"
                " nobody to show the card to"
            )
        call, state = live.call, live.state
        uid = _int_id(live.user_id, "user")
        call_id = await state.get(CALL_ID)
        if not call_id:
            try:
                reg, used = await self._register(
                    call,
                    live.user_id,
                    live.contact,
                    state,
                    crm_create=self._creates_lead(call),
                    show=True,
                )
            except TelephonyRefused as exc:
                await self._telephony_refused(exc)
                return Skipped(REFUSED_LIVE)
            except Bitrix24Error as exc:
                if exc.code not in NO_TELEPHONY_SCOPE:
                    raise
                self._no_live = f"no live card: {exc.reason}"
                return Skipped(self._no_live)
            call_id = str(reg["CALL_ID"])
            await state.put(SHOWN, json.dumps([int(used)]))
            if int(used) == uid:
                return call_id
            # Registered for an earlier ringing user (a retry of that ring came too late to
            # show): this user gets the card too.
        if await state.get(FINISHED):
            return Skipped("the call is already finished in Bitrix24")
        if uid in await self._shown(state):
            return call_id  # a repeated ring: shown already
        if not await self._show(state, call_id, {uid}):
            return Skipped("telephony.externalCall.show: Bitrix24 no longer knows the call")
        return f"{call_id} shown to {uid}"

    @one_at_a_time
    async def answered(self, live: LiveCall) -> str | Skipped:
        """Hide the card from everyone it was shown to except the user who answered."""
        state = live.state
        call_id = await state.get(CALL_ID)
        if not call_id:
            return Skipped("no card was shown for this call")
        if await state.get(FINISHED):
            return Skipped("the call is already finished in Bitrix24")
        uid = _int_id(live.user_id, "user") if live.user_id is not None else None
        if uid is not None:
            await state.put(ANSWERED_BY, str(uid))
        shown = await self._shown(state)
        others = sorted(shown - {uid})  # an unmapped user answered: hidden from everyone
        if others:
            hidden = await self.api.result(
                "telephony.externalCall.hide", {"CALL_ID": call_id, "USER_ID": others}
            )
            if hidden is False:
                return Skipped("telephony.externalCall.hide: Bitrix24 no longer knows the call")
            await state.put(SHOWN, json.dumps(sorted(shown - set(others))))
        # Answered by a user whose ring never reached us: the card goes to them.
        missing = uid is not None and uid not in shown
        if missing and not await self._show(state, call_id, {uid}):  # type: ignore[arg-type]
            return Skipped("telephony.externalCall.show: Bitrix24 no longer knows the call")
        return f"{call_id} hidden from {others}" if others else f"{call_id} kept"

    @one_at_a_time
    async def over(self, live: LiveCall) -> str | Skipped:
        """The call ended or was missed: finish the ring's registration at once (that closes
        every card); the post-call job then attaches the recording / adds the to-do."""
        state, call = live.state, live.call
        call_id = await state.get(CALL_ID)
        if not call_id:
            return Skipped("no card was shown for this call: its post-call job logs it")
        if await state.get(FINISHED):
            return call_id
        mapped = self.settings.users.get(live.extension) if live.extension else None
        user = (
            mapped
            or await state.get(ANSWERED_BY)
            or await state.get(CALL_USER)
            or live.user_id
            or await self._fallback_user()
        )
        finished = await self._finish(call, call_id, user)
        if finished is None:
            await state.put(CALL_ID, "")
            return Skipped("the registered call vanished in Bitrix24: its post-call job logs it")
        await state.put(FINISHED, finished)
        await state.put(SHOWN, "[]")
        return call_id

    # --- missed calls -----------------------------------------------------------------------

    @one_at_a_time
    async def create_task(self, task: FollowUp) -> str:
        user_id = task.user_id or await self._fallback_user()
        call = task.call
        if call.missed and call.client is not None and self._telephony():
            # A missed call in Bitrix24's telephony too (304: its statistics, its missed-call
            # rules), finished before the to-do: a retry never adds a second to-do for it.
            try:
                await self._telephony_log(call, user_id, task.contact, task.state)
            except TelephonyRefused:
                raise
            except Permanent as exc:
                # The follow-up matters more than the statistics entry: the to-do still goes.
                self.ctx.log.warning("missed call not registered in telephony", reason=exc.reason)
        user = _int_id(user_id, "user")
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
            live = [a for a in ("ringing", "answered", "over") if a in self.settings.events]
            if live:
                notes.append(
                    "caller's card while the phone rings (register SHOW=1, show, hide, finish);"
                    " events: " + ", ".join(live)
                )
        return CheckResult(account=account, users=users, notes=notes)
