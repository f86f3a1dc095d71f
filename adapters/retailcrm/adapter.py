"""The RetailCRM adapter: customers and their manager by phone, the call log of the telephony
API, missed-call tasks, and the telephony integration module.

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
    Adapter,
    CallLog,
    CheckResult,
    Contact,
    DeliveryError,
    FollowUp,
    NewContact,
    Permanent,
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
MAX_USER_PAGES = 50


def _name(record: dict[str, Any]) -> str | None:
    parts = (record.get("firstName"), record.get("patronymic"), record.get("lastName"))
    return " ".join(p for p in parts if p) or None


def _phones(record: dict[str, Any]) -> list[str]:
    return [str(p.get("number") or "") for p in record.get("phones") or [] if isinstance(p, dict)]


class RetailCRMAdapter(Adapter):
    Settings = RetailCRMSettings
    settings: RetailCRMSettings

    def __init__(self, settings: RetailCRMSettings, ctx: Any) -> None:
        super().__init__(settings, ctx)
        self.api = RetailCRMAPI(settings, ctx)
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
        telephony: dict[str, Any] = {
            "allowEdit": False,  # extension codes come from the bridge's `users` map
            "inputEventSupported": False,
            "outputEventSupported": False,
            "hangupEventSupported": False,
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

    async def log_call(self, log: CallLog) -> str:
        if self.settings.register_integration and not self._registered:
            await self.register_integration()
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

    async def aclose(self) -> None:
        await self.api.aclose()
