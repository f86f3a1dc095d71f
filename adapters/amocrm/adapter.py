"""amoCRM / Kommo (API v4): calls in the client's card, missed calls as "call back" tasks.

Endpoints (official API v4 reference, amocrm.ru/developers and kommo.com/developers):
``GET /api/v4/contacts?query=`` (204 when nothing matches), ``GET /api/v4/leads``,
``GET /api/v4/companies?query=``, ``POST /api/v4/contacts``, ``POST /api/v4/leads/complex``,
``POST /api/v4/leads/unsorted/sip``,
``POST /api/v4/calls``, ``POST /api/v4/tasks``, ``GET /api/v4/account``, ``GET /api/v4/users``,
``POST /oauth2/access_token``, and the incoming-call notification ``POST /api/v2/events``
(amoCRM "Уведомление о звонке", Kommo "Add call notifications").
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from adapters.amocrm.api import AmoAPI, problem_text
from adapters.amocrm.settings import AmoCRMSettings
from bridge.adapter import (
    AdapterContext,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    JsonAdapter,
    LiveCall,
    NewContact,
    RetryLater,
    Skipped,
    compact,
    user_number,
)
from bridge.call import Call
from bridge.phones import Phone

# amo's ``call_status`` values (API v4 "Adding calls"): 1 left a message, 2 call back later,
# 3 not available, 4 had a conversation, 5 invalid phone number, 6 didn't get through, 7 busy.
TALKED, NOT_AVAILABLE, WRONG_NUMBER, NOT_THROUGH, BUSY = 4, 3, 5, 6, 7


def call_status(call: Call) -> int:
    """The amo ``call_status`` of a call. onlinePBX says nothing of voicemail or of a promise to
    call back, so 1 and 2 are never sent; a rejected call or one with no route is "didn't get
    through", not "wrong number" (only a number that does not exist is)."""
    if call.answered:
        return TALKED
    if call.outcome == "busy":
        return BUSY
    if call.wrong_number:
        return WRONG_NUMBER
    if call.unreachable:
        return NOT_AVAILABLE
    return NOT_THROUGH


TASK_TYPE_CALL = 1  # amo's predefined task type "Звонок" / "Follow-up"
NOTIFIED = "amocrm.notified"  # CallState: the amo users already shown this call's notification
CLOSED_LEAD_STATUSES = frozenset({142, 143})  # won / lost, the same in every pipeline


def _embedded(data: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(data, dict):
        return []
    items = (data.get("_embedded") or {}).get(key) or []
    return [i for i in items if isinstance(i, dict)]


def _phone_values(contact: dict[str, Any]) -> Iterator[str]:
    for field in contact.get("custom_fields_values") or []:
        if (field or {}).get("field_code") == "PHONE":
            for value in field.get("values") or []:
                yield str((value or {}).get("value") or "")


def _lead_ids(contact: dict[str, Any]) -> list[int]:
    return [int(lead["id"]) for lead in _embedded(contact, "leads") if "id" in lead]


def _phone_field(phone: Phone) -> list[dict[str, Any]]:
    return [{"field_code": "PHONE", "values": [{"value": phone.e164, "enum_code": "WORK"}]}]


class AmoCRMAdapter(JsonAdapter[AmoCRMSettings, AmoAPI]):
    #: amo's call notification finds the contact/company (and its lead) by the number itself:
    #: no lookup request before it.
    live_lookup = False

    def __init__(self, settings: AmoCRMSettings, ctx: AdapterContext) -> None:
        super().__init__(settings, ctx)
        self._fallback_user: int | None = None  # the account's user, asked once

    async def _post(self, path: str, items: list[dict[str, Any]]) -> Any:
        return await self.api.call("POST", path, json=items)

    # --- contacts ----------------------------------------------------------------------------

    async def find_contact(self, phone: Phone) -> Contact | None:
        # A contact first, then a company: amo attaches a call to either by the number, so a
        # company holding it must not get a duplicate contact beside it. (Customers have no
        # phone of their own: they are reached through their contacts and companies.)
        for kind in ("contacts", "companies"):
            found = await self._find(kind, phone)
            if found is not None:
                return found
        return None

    async def _find(self, kind: str, phone: Phone) -> Contact | None:
        query = phone.last10 if len(phone.digits) >= 10 else phone.digits
        data = await self.api.call(
            "GET", f"/api/v4/{kind}", params={"query": query, "with": "leads", "limit": 50}
        )
        if data is None:
            return None  # amo answers 204 with no body when nothing matches
        # amo's search is by substring over every field: confirm by the PHONE values.
        hits = [c for c in _embedded(data, kind) if any(map(phone.matches, _phone_values(c)))]
        if not hits:
            return None
        if len(hits) == 1:
            return self._contact(hits[0], None, kind)
        open_ids = await self._open_leads(lid for c in hits for lid in _lead_ids(c))
        hits.sort(
            key=lambda c: (
                any(lid in open_ids for lid in _lead_ids(c)),
                int(c.get("updated_at") or 0),
                int(c.get("id") or 0),
            ),
            reverse=True,
        )
        chosen = hits[0]
        self.ctx.log.warning(
            f"several amoCRM {kind} have this number; using the one with an open lead,"
            " then the most recently updated",
            phone=phone.e164,
            found=[c.get("id") for c in hits],
            chosen=chosen.get("id"),
        )
        return self._contact(chosen, open_ids, kind)

    @staticmethod
    def _contact(raw: dict[str, Any], open_ids: set[int] | None, kind: str) -> Contact:
        leads = _lead_ids(raw)
        extra: dict[str, Any] = {"lead_ids": leads}
        if open_ids is not None:
            extra["open_lead_ids"] = [lid for lid in leads if lid in open_ids]
        owner = raw.get("responsible_user_id")
        return Contact(
            id=str(raw["id"]),
            name=raw.get("name"),
            owner_id=str(owner) if owner else None,
            kind="company" if kind == "companies" else "contact",
            extra=extra,
        )

    async def _open_leads(self, ids: Iterable[int]) -> set[int]:
        wanted = sorted(set(ids))[:250]
        if not wanted:
            return set()
        params = [("filter[id][]", str(i)) for i in wanted] + [("limit", "250")]
        leads = _embedded(await self.api.call("GET", "/api/v4/leads", params=params), "leads")
        return {
            int(lead["id"])
            for lead in leads
            if "id" in lead
            and lead.get("status_id") not in CLOSED_LEAD_STATUSES
            and not lead.get("is_deleted")
        }

    async def create_contact(self, new: NewContact) -> Contact:
        phone, owner_id, call, name = new.phone, new.owner_id, new.call, new.name
        owner = user_number(owner_id)
        contact = compact(
            {
                "name": name,
                "responsible_user_id": owner,
                "custom_fields_values": _phone_field(phone),
            }
        )
        policy = self.settings.unknown_caller
        if policy == "unsorted":
            return await self._create_unsorted(phone, owner_id, call, contact)
        if policy == "lead":
            lead = compact(
                {
                    "name": self.ctx.texts.call_title(call),
                    "responsible_user_id": owner,
                    "pipeline_id": self.settings.pipeline_id,
                    "_embedded": {"contacts": [contact]},
                }
            )
            data = await self._post("/api/v4/leads/complex", [lead])
            row = data[0] if isinstance(data, list) and data else {}
            if not row.get("contact_id"):
                raise RetryLater(f"POST /api/v4/leads/complex: no contact id in {str(data)[:200]}")
            lead_id = int(row["id"])
            return Contact(
                id=str(row["contact_id"]),
                name=name,
                owner_id=owner_id,
                extra={"lead_ids": [lead_id], "open_lead_ids": [lead_id]},
            )
        created = _embedded(await self._post("/api/v4/contacts", [contact]), "contacts")
        if not created or "id" not in created[0]:
            raise RetryLater("POST /api/v4/contacts: the answer named no contact id")
        return Contact(id=str(created[0]["id"]), name=name, owner_id=owner_id, extra={})

    async def _create_unsorted(
        self, phone: Phone, owner_id: str | None, call: Call, contact: dict[str, Any]
    ) -> Contact:
        caller, callee = call.parties()
        item = compact(
            {
                "source_name": "onlinePBX",
                "source_uid": call.uuid,
                "pipeline_id": self.settings.pipeline_id,
                "created_at": int(call.started_at.timestamp()),
                "metadata": compact(
                    {
                        "is_call_event_needed": True,
                        "uniq": call.uuid,
                        "duration": call.talk_seconds,
                        "service_code": self.settings.source,
                        "link": call.recording_url,
                        "phone": callee,
                        "from": caller,
                        "called_at": int(call.started_at.timestamp()),
                    }
                ),
                "_embedded": {
                    "leads": [
                        compact(
                            {
                                "name": self.ctx.texts.call_title(call),
                                "responsible_user_id": user_number(owner_id),
                            }
                        )
                    ],
                    "contacts": [contact],
                },
            }
        )
        unsorted = _embedded(await self._post("/api/v4/leads/unsorted/sip", [item]), "unsorted")
        first = unsorted[0] if unsorted else {}
        contacts, leads = _embedded(first, "contacts"), _embedded(first, "leads")
        if not contacts or "id" not in contacts[0]:
            raise RetryLater("POST /api/v4/leads/unsorted/sip: the answer named no contact id")
        lead_ids = [int(lead["id"]) for lead in leads if "id" in lead]
        return Contact(
            id=str(contacts[0]["id"]),
            name=contact["name"],
            owner_id=owner_id,
            extra={
                "unsorted_uid": first.get("uid"),
                "call_uuid": call.uuid,  # this call is already in the Unsorted card
                "lead_ids": lead_ids,
                "open_lead_ids": lead_ids,
            },
        )

    # --- calls and tasks ---------------------------------------------------------------------

    async def log_call(self, log: CallLog) -> str:
        call, contact = log.call, log.contact
        if (
            contact
            and contact.extra.get("unsorted_uid")
            and contact.extra.get("call_uuid") == (call.uuid)
        ):
            # The Unsorted entry was made with this call as its metadata (is_call_event_needed).
            return f"unsorted:{contact.extra['unsorted_uid']}"
        user = user_number(log.user_id)
        body = compact(
            {
                "direction": call.direction,
                "uniq": call.uuid,  # amo's dedup key for calls
                "duration": call.talk_seconds,
                "source": self.settings.source,
                "phone": call.client_number,
                "link": call.recording_url,
                "call_status": call_status(call),
                "call_result": log.result,
                "call_responsible": user,  # who made or took the call
                "responsible_user_id": user,
                "created_by": user,
                "created_at": int(call.started_at.timestamp()),
                "request_id": call.uuid,
            }
        )
        what = "POST /api/v4/calls"
        answer = await self.api.request(
            "POST", "/api/v4/calls", what=what, json=[body], allow=(400,)
        )
        data = answer.body
        if answer.status == 400 and "validation-errors" in answer.object:
            self.api.raise_for(answer, what)
        calls = _embedded(data, "calls")
        if calls and "id" in calls[0]:
            return f"call:{calls[0]['id']}"
        # amo drops a call whose number matches no contact or company (HTTP 200 or 400 with
        # an `errors` list and no calls).
        if answer.status == 400 and not answer.object.get("errors"):
            self.api.raise_for(answer, what)
        why = problem_text(data) or f"HTTP {answer.status}, no call in the answer"
        if contact is None:
            return Skipped(
                f"amoCRM has no contact or company with {body['phone']} and"
                f" create_contacts did not allow creating one ({why})"
            )
        raise RetryLater(
            f"POST /api/v4/calls: amoCRM did not attach the call to contact {contact.id} ({why})"
        )

    async def _task_entity(self, contact: Contact) -> tuple[str, int]:
        """The contact's one open lead if it has exactly one (where amo puts its calls too),
        else the contact."""
        open_ids = contact.extra.get("open_lead_ids")
        if open_ids is None and contact.extra.get("lead_ids"):
            open_ids = sorted(await self._open_leads(contact.extra["lead_ids"]))
        if open_ids and len(open_ids) == 1:
            return "leads", int(open_ids[0])
        return ("companies" if contact.kind == "company" else "contacts"), int(contact.id)

    async def create_task(self, task: FollowUp) -> str:
        entity_type = entity_id = None
        if task.contact is not None:
            entity_type, entity_id = await self._task_entity(task.contact)
        text = task.title + (f"\n{task.description}" if task.description else "")
        body = compact(
            {
                "task_type_id": TASK_TYPE_CALL,
                "text": text,
                "complete_till": int(task.due_at.timestamp()),
                "responsible_user_id": await self._task_user(task),
                "entity_type": entity_type,
                "entity_id": entity_id,
                "request_id": task.call.uuid,
            }
        )
        created = _embedded(await self._post("/api/v4/tasks", [body]), "tasks")
        if not created or "id" not in created[0]:
            raise RetryLater("POST /api/v4/tasks: the answer named no task id")
        return f"task:{created[0]['id']}"

    async def _task_user(self, task: FollowUp) -> int:
        """amo refuses a task without ``responsible_user_id``: the call's user, else
        default_user, else the account's current user (the integration's), else the first
        active user of the account."""
        chosen = user_number(task.user_id) or user_number(self.settings.default_user)
        if chosen is not None:
            return chosen
        if self._fallback_user is None:
            self._fallback_user = await self._account_user()
        return self._fallback_user

    async def _account_user(self) -> int:
        account = await self.api.call("GET", "/api/v4/account") or {}
        if account.get("current_user_id"):
            return int(account["current_user_id"])
        data = await self.api.call("GET", "/api/v4/users", params={"limit": 250})
        for user in _embedded(data, "users"):
            if (user.get("rights") or {}).get("is_active", True) and "id" in user:
                return int(user["id"])
        raise RetryLater(
            "amoCRM needs a responsible user for the task and none is known: set default_user"
            " in [adapters.amocrm] (`pbx-bridge check` lists the ids)"
        )

    # --- live: the incoming-call notification -------------------------------------------------

    async def ringing(self, live: LiveCall) -> str | Skipped:
        """amo's call notification (``POST /api/v2/events``, type ``phone_call``) for the
        ringing user (outbound: the user who dials). amo shows it in the corner of the user's
        screen with the card it finds by the number (the one open lead, else the contact or
        company) or an offer to create a contact. There is no request to hide it: answered
        and over have nothing to send (see docs/adapters/amocrm.md)."""
        call = live.call
        if call.client is None:
            return Skipped("no client number to show")
        user = user_number(live.user_id)
        if user is None:
            # Never without `users`: amo would notify every user of the account.
            return Skipped(
                f"extension {live.extension or '?'} has no amoCRM user (`users` map or"
                " default_user): a notification without users would go to everyone"
            )
        notified: list[int] = json.loads(await live.state.get(NOTIFIED) or "[]")
        if user in notified:
            return Skipped(f"amoCRM user {user} was already notified of this call")
        event = {"type": "phone_call", "phone_number": call.client.e164, "users": [user]}
        await self.api.call("POST", "/api/v2/events", "POST /api/v2/events", json={"add": [event]})
        await live.state.put(NOTIFIED, json.dumps([*notified, user]))
        return f"notified:{user}"

    # --- check -------------------------------------------------------------------------------

    async def check(self) -> CheckResult:
        account = await self.api.call("GET", "/api/v4/account") or {}
        users: list[tuple[str, str]] = []
        page = 1
        while page <= 20:
            data = await self.api.call("GET", "/api/v4/users", params={"page": page, "limit": 250})
            if not isinstance(data, dict):
                break
            users += [(str(u["id"]), str(u.get("name") or "")) for u in _embedded(data, "users")]
            if not ((data.get("_links") or {}).get("next")):
                break
            page += 1
        name = account.get("name") or account.get("subdomain") or "?"
        notes = [
            f"account id {account.get('id')}, subdomain {account.get('subdomain')}",
            "auth: "
            + (
                "OAuth 2.0 (tokens kept in the bridge database)"
                if self.api.auth and self.api.auth.oauth
                else "long-lived token"
            ),
            f"unknown callers: {self.settings.unknown_caller}",
        ]
        return CheckResult(account=str(name), users=users, notes=notes)
