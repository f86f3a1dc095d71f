"""The RetailCRM adapter: customers and their manager by phone, the call log of the telephony
API, missed-call tasks, the telephony integration module, and live call events (the
manager's incoming/outgoing call popup while the phone rings, closed when the call is over).

Request shapes follow RetailCRM's API v5 reference and its official clients
(retailcrm/api-client-php models: ``Telephony\\Call``, ``Tasks\\Task``,
``Integration\\Telephony\\TelephonyConfiguration``); see docs/adapters/retailcrm.md.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapters.retailcrm.api import RetailCRMAPI
from adapters.retailcrm.settings import RetailCRMSettings
from bridge.adapter import (
    CallLog,
    CheckResult,
    Contact,
    DeliveryError,
    FollowUp,
    JsonAdapter,
    LiveCall,
    NewContact,
    Permanent,
    Skipped,
    compact,
    user_number,
)
from bridge.phones import Phone

# Telephony\CallResult of the official client.
RESULT = {
    "answered": "answered",
    "busy": "busy",
    "failed": "failed",
    "missed": "no answer",
    "no_answer": "no answer",
}
CALL_DATE = "%Y-%m-%d %H:%M:%S"  # Telephony\Call::date, in the account's time zone
TASK_DATE = "%Y-%m-%d %H:%M"  # Tasks\Task::datetime, likewise
INTEGRATION_STATE = "integration"  # fingerprint of the module last registered
USERS_PAGE = 100  # the largest page RetailCRM serves
SHOWN = "retailcrm.shown"  # CallState: the managers a call event showed this call to
# Telephony\CallEventHangupStatus of the official client: answered, busy, cancel, failed,
# "no answered". onlinePBX does not say who gave up on an unanswered call, so "cancel" is
# never sent: an unanswered call is "no answered".
HANGUP_STATUS = {"answered": "answered", "busy": "busy", "failed": "failed"}
NOT_ANSWERED = "no answered"
MAX_USER_PAGES = 50


def _name(record: dict[str, Any]) -> str | None:
    parts = (record.get("firstName"), record.get("patronymic"), record.get("lastName"))
    return " ".join(p for p in parts if p) or None


def _label(manager: dict[str, Any]) -> str:
    return f"user {manager['userId']}" if "userId" in manager else f"code {manager['code']}"


def _phones(record: dict[str, Any]) -> list[str]:
    return [str(p.get("number") or "") for p in record.get("phones") or [] if isinstance(p, dict)]


def _managers(entries: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The ``userIds`` / ``codes`` of a call event naming every manager in ``entries``."""
    ids = [e["userId"] for e in entries if "userId" in e]
    codes = [e["code"] for e in entries if "code" in e]
    return compact({"userIds": ids or None, "codes": codes or None})


class RetailCRMAdapter(JsonAdapter[RetailCRMSettings, RetailCRMAPI]):
    #: A call event names only the phone: RetailCRM finds the customer for its popup itself.
    live_lookup = False

    def __init__(self, settings: RetailCRMSettings, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self._tz: tzinfo | None = None
        self._registered = False

    # -- customers ------------------------------------------------------------------------

    async def find_contact(self, phone: Phone) -> Contact | None:
        # telephony/manager answers the customer and the manager RetailCRM would route the
        # call to (the customer's manager, else its last order's): one request in most cases.
        data = await self.api.get(
            "/telephony/manager",
            "responsible manager",
            phone=phone.digits,
            details=1,
            ignoreStatus=1,
        )
        manager = (data.get("manager") or {}).get("id")
        customer = data.get("customer") or {}
        if customer.get("id") and any(phone.matches(p) for p in _phones(customer)):
            return self._contact(customer, manager)
        # No customer there (or another number's): the customers list, filtered by phone.
        found = await self.api.get(
            "/customers",
            "search customers",
            **{"filter[name]": phone.digits[-10:], "limit": 20},
            **({"filter[sites][]": self.settings.site} if self.settings.site else {}),
        )
        hits = [
            c for c in found.get("customers") or [] if any(phone.matches(p) for p in _phones(c))
        ]
        if not hits:
            return None
        first = min(hits, key=lambda c: int(c.get("id") or 0))  # the oldest customer
        contact = self._contact(first, first.get("managerId") or manager)
        if len(hits) > 1:
            contact.extra["matches"] = len(hits)
        return contact

    @staticmethod
    def _contact(customer: dict[str, Any], manager: Any) -> Contact:
        extra = {"site": customer["site"]} if customer.get("site") else {}
        return Contact(
            id=str(customer["id"]),
            name=_name(customer),
            owner_id=str(manager) if manager else None,
            kind="customer",
            extra=extra,
        )

    async def create_contact(self, new: NewContact) -> Contact:
        customer = compact(
            {
                "firstName": new.name,
                "phones": [{"number": new.phone.e164}],
                "managerId": user_number(new.owner_id),
            }
        )
        data = await self.api.post(
            "/customers/create", "create customer", customer=customer, site=self.settings.site
        )
        return Contact(id=str(data["id"]), name=new.name, owner_id=new.owner_id, kind="customer")

    # -- time zone ------------------------------------------------------------------------

    async def account_tz(self) -> tzinfo:
        """RetailCRM reads dates in the account's time zone (Settings → time zone); read it
        once. A key that may not read settings falls back to ``[schedule] timezone``."""
        if self._tz is None:
            tz: tzinfo = self.ctx.texts.tz
            try:
                data = await self.api.get("/settings", "account settings")
                name = ((data.get("settings") or {}).get("timezone") or {}).get("value")
                if name:
                    tz = ZoneInfo(str(name))
            except (Permanent, ZoneInfoNotFoundError, ValueError):
                pass
            self._tz = tz
        return self._tz

    async def local(self, moment: datetime, fmt: str) -> str:
        return moment.astimezone(await self.account_tz()).strftime(fmt)

    # -- the telephony integration --------------------------------------------------------

    def client_id(self) -> str:
        """Stable per account and module: re-registering edits the same module."""
        seed = f"{self.settings.base_url}|{self.settings.integration_code}"
        return hashlib.sha256(seed.encode()).hexdigest()[:32]

    def integration_module(self) -> dict[str, Any]:
        codes = [
            {"userId": int(uid), "code": ext} for ext, uid in sorted(self.settings.users.items())
        ]
        events = set(self.settings.events)
        telephony: dict[str, Any] = {
            "allowEdit": False,  # extension codes come from the bridge's `users` map
            # The call events the bridge sends (telephony/call/event): in, out, hangup.
            "inputEventSupported": "ringing" in events,
            "outputEventSupported": "ringing" in events,
            "hangupEventSupported": bool(events & {"answered", "over"}),
            "additionalCodes": codes,
        }
        return {
            "code": self.settings.integration_code,
            "integrationCode": self.settings.integration_code,
            "active": True,
            "name": "onlinePBX",
            "clientId": self.client_id(),
            "integrations": {"telephony": telephony},
        }

    async def register_integration(self, *, force: bool = False) -> bool:
        """``integration-modules/{code}/edit`` creates or updates the module: sent again only
        when what the bridge would register changed (or ``force``). True when sent."""
        module = self.integration_module()
        fingerprint = hashlib.sha256(json.dumps(module, sort_keys=True).encode()).hexdigest()
        if not force and await self.ctx.state.get(INTEGRATION_STATE) == fingerprint:
            self._registered = True
            return False
        await self.api.post(
            f"/integration-modules/{self.settings.integration_code}/edit",
            "register telephony integration",
            integrationModule=module,
        )
        await self.ctx.state.put(INTEGRATION_STATE, fingerprint)
        self._registered = True
        return True

    # -- calls and tasks ------------------------------------------------------------------

    async def call_entry(self, log: CallLog) -> dict[str, Any]:
        c = log.call
        entry: dict[str, Any] = {
            "date": await self.local(c.started_at, CALL_DATE),
            "type": "in" if c.direction == "inbound" else "out",
            "phone": c.client.digits if c.client else c.client_raw,
            "result": RESULT.get(c.outcome, "unknown"),
            "duration": c.talk_seconds,
            "durationWaiting": max(0, c.total_seconds - c.talk_seconds),
            "externalId": c.uuid,
        }
        uid = user_number(log.user_id)
        if uid is not None:
            entry["userId"] = uid
        elif c.extension:
            entry["code"] = c.extension  # the manager's extension code in RetailCRM
        if c.recording_url:
            entry["recordUrl"] = c.recording_url
        if c.gateway:
            entry["externalPhone"] = c.gateway
        site = (log.contact.extra.get("site") if log.contact else None) or self.settings.site
        if site:
            entry["site"] = site
        return entry

    async def _registration(self) -> None:
        """Calls and call events belong to the telephony module: register it first."""
        if self.settings.register_integration and not self._registered:
            await self.register_integration()

    async def log_call(self, log: CallLog) -> str:
        await self._registration()
        data = await self.api.post(
            "/telephony/calls/upload", "upload call", calls=[await self.call_entry(log)]
        )
        # A repeat of an uploaded externalId comes back in duplicateCalls: already logged.
        if log.call.uuid in [str(d) for d in data.get("duplicateCalls") or []]:
            return f"call:{log.call.uuid} (already in RetailCRM)"
        if not data.get("processedCallsCount"):
            raise Permanent(f"upload call: RetailCRM processed no call: {json.dumps(data)[:200]}")
        return f"call:{log.call.uuid}"

    async def task_body(self, task: FollowUp) -> dict[str, Any]:
        performer = user_number(task.user_id)
        if performer is None:
            raise Permanent(
                "a RetailCRM task needs a performer: set default_user (or the `users` map)"
                " to a RetailCRM user id (`pbx-bridge check` lists them)"
            )
        body: dict[str, Any] = {
            "text": task.title,
            "commentary": task.description,
            "datetime": await self.local(task.due_at, TASK_DATE),
            "performerId": performer,
        }
        if task.contact is not None:
            body["customer"] = {"id": int(task.contact.id)}
        if task.call.client is not None:
            body["phone"] = task.call.client.digits
        return body

    async def create_task(self, task: FollowUp) -> str:
        site = (task.contact.extra.get("site") if task.contact else None) or self.settings.site
        data = await self.api.post(
            "/tasks/create", "create task", task=await self.task_body(task), site=site
        )
        return f"task:{data['id']}"

    # -- live call events -----------------------------------------------------------------

    def _manager(self, live: LiveCall) -> dict[str, Any] | None:
        """Whom a call event is for: the user id (``users`` map / default_user), else the
        extension as the manager's code (the module's ``additionalCodes``, or the code set in
        the manager's RetailCRM profile)."""
        uid = user_number(live.user_id)
        if uid is not None:
            return {"userId": uid}
        return {"code": live.extension} if live.extension else None

    async def _shown(self, live: LiveCall) -> list[dict[str, Any]]:
        return json.loads(await live.state.get(SHOWN) or "[]")

    async def _event(
        self, live: LiveCall, kind: str, to: list[dict[str, Any]], what: str, **extra: Any
    ) -> Skipped | None:
        """``POST /api/v5/telephony/call/event`` for the managers ``to``; Skipped when
        RetailCRM knows none of them (``notExistUsers`` / ``notExistCodes``)."""
        await self._registration()
        c = live.call
        event = compact(
            {
                "phone": c.client.digits if c.client else c.client_raw,
                "type": kind,
                **_managers(to),
                "callExternalId": c.uuid,
                "externalPhone": c.gateway or None,
                "site": self.settings.site,
                **extra,
            }
        )
        data = await self.api.post("/telephony/call/event", what, event=event)
        missing_ids = {int(u) for u in data.get("notExistUsers") or [] if str(u).isdigit()}
        missing_codes = {str(code) for code in data.get("notExistCodes") or []}
        known = [
            e
            for e in to
            if e.get("userId") not in missing_ids and str(e.get("code")) not in missing_codes
        ]
        if known:
            return None
        named = ", ".join(map(_label, to))
        return Skipped(
            f"RetailCRM knows no manager {named} (notExistUsers/notExistCodes): fix the `users`"
            " map (`pbx-bridge check` lists the ids)"
        )

    async def ringing(self, live: LiveCall) -> str | Skipped:
        """The manager's call popup: ``in`` for the extension that rings, ``out`` for the
        extension that dials."""
        manager = self._manager(live)
        if manager is None:
            return Skipped("no RetailCRM manager for this call (no extension, no default_user)")
        shown = await self._shown(live)
        if manager in shown:
            return Skipped(f"already shown to {_label(manager)}")
        kind = "in" if live.call.direction == "inbound" else "out"
        refused = await self._event(live, kind, [manager], f"call event {kind}")
        if refused is not None:
            return refused
        await live.state.put(SHOWN, json.dumps([*shown, manager]))
        return f"event:{kind}:{_label(manager)}"

    async def answered(self, live: LiveCall) -> str | Skipped:
        """Someone took the call: close the popup of every other manager it was shown to
        (``hangup``, ``hangupStatus: answered``); the one who answered keeps it."""
        taker = self._manager(live)
        shown = await self._shown(live)
        others = [m for m in shown if m != taker]
        if not others:
            return Skipped("the call was shown to nobody else")
        refused = await self._event(
            live,
            "hangup",
            others,
            "call event hangup (answered elsewhere)",
            hangupStatus="answered",
        )
        if refused is not None:
            return refused
        await live.state.put(SHOWN, json.dumps([m for m in shown if m == taker]))
        return "event:hangup:" + ",".join(map(_label, others))

    async def over(self, live: LiveCall) -> str | Skipped:
        """The call ended or was missed: ``hangup`` for every manager still shown it, with
        how it ended (a refusal is put aside by the core, never a dead job: the call log is
        the record)."""
        shown = await self._shown(live)
        if not shown:
            return Skipped("no call popup is open for this call")
        c = live.call
        status = HANGUP_STATUS.get(c.outcome, NOT_ANSWERED)
        refused = await self._event(live, "hangup", shown, "call event hangup", hangupStatus=status)
        if refused is not None:
            return refused
        await live.state.put(SHOWN, "[]")
        return f"event:hangup:{status}"

    # -- check ----------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        creds = await self.api.get("/api/credentials", "API key permissions")
        users: list[tuple[str, str]] = []
        for page in range(1, MAX_USER_PAGES + 1):
            data = await self.api.get(
                "/users", "list users", **{"filter[active]": 1, "limit": USERS_PAGE, "page": page}
            )
            for u in data.get("users") or []:
                label = _name(u) or "?"
                if u.get("email"):
                    label += f" <{u['email']}>"
                users.append((str(u["id"]), label))
            pages = (data.get("pagination") or {}).get("totalPageCount") or 1
            if page >= pages:
                break
        notes = [f"API key sees stores: {', '.join(creds.get('sitesAvailable') or []) or '?'}"]
        sites = creds.get("sitesAvailable") or []
        if self.settings.site is None and len(sites) > 1:
            notes.append("the key sees several stores: set site (customers and tasks need it)")
        elif self.settings.site and sites and self.settings.site not in sites:
            notes.append(f"site {self.settings.site!r} is not among the key's stores")
        self._tz = None
        tz = await self.account_tz()
        if str(tz) != str(self.ctx.texts.tz):
            notes.append(
                f"account time zone {tz} differs from [schedule] timezone {self.ctx.texts.tz}:"
                " RetailCRM dates are written in the account's"
            )
        if self.settings.register_integration:
            try:
                await self.register_integration(force=True)
                notes.append(
                    f"telephony integration {self.settings.integration_code!r} registered"
                    f" ({len(self.settings.users)} extension codes)"
                )
            except DeliveryError as exc:
                notes.append(f"telephony integration NOT registered: {exc.reason}")
        return CheckResult(account=f"RetailCRM {self.settings.base_url}", users=users, notes=notes)
