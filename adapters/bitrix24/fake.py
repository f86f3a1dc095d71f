"""A Bitrix24 portal in memory, answering httpx requests as the official REST docs describe
(github.com/bitrix24/b24restdocs: ``api-reference/telephony/*``, ``_includes/system-errors.md``,
``settings/oauth/*``, ``settings/how-to-call-rest-api/change-domen.md``).

:class:`Portal` is used as a respx side effect by the unit tests
(``respx.route(host=...).mock(side_effect=portal)``) and, behind aiohttp, by the contract suite
and the reliability harness (:class:`FakeBitrix24`, named by the manifest). It refuses what
Bitrix24 refuses:

- an inbound webhook with a wrong code (``NO_AUTH_FOUND``), a method outside the webhook's
  scopes (``insufficient_scope``), and — as documented, "works only in the context of an
  application" — ``register``/``finish``/``externalLine.*`` called by a webhook
  (``WRONG_AUTH_TYPE``; ``app_only=False`` models a portal that does not enforce it);
- an expired or unknown OAuth access token (``expired_token`` / ``NO_AUTH_FOUND``), a spent
  refresh token (``invalid_grant``: refresh tokens are single-use);
- ``finish`` of a ``CALL_ID`` that is unknown or already finished ("Call is not found (call
  should be registered prior to finishing)"), ``attachRecord`` before ``finish`` ("… not
  finished yet"), ``show``/``hide`` of such a call (``result: false``, as the docs say);
- an unknown or inactive user (``ERROR_CORE`` "User is not found or is not active"), a bad
  ``TYPE``, a ``CALL_START_DATE`` that is not ISO-8601, a line added twice ("Line already
  exists"), ``voximplant.statistic.get`` by a user without the "Call statistics — View"
  permission (``ACCESS_DENIED``).

``register`` with the same ``PHONE_NUMBER``, ``TYPE``, ``USER_ID``, ``LINE_NUMBER`` and
``EXTERNAL_CALL_ID`` within 30 minutes returns the same ``CALL_ID`` (the docs' "Features of
Re-registration"); the fake does so while the call is not finished (whether a *finished* call's
id is returned again is not documented). A portal that changed its address answers 302 with
``Location`` on the new one; a blocked or deleted portal answers ``OVERLOAD_LIMIT`` /
``PORTAL_DELETED``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import count
from typing import Any, ClassVar

import httpx

from bridge import fakecrm
from bridge.fakecrm import CALL, CRM_COMMON, TASK, FakeCRM, Recorded, as_httpx, key, marked, relay

PORTAL = "https://example.bitrix24.ru"
CODE = "k3yS3cr3tC0de9x"
WEBHOOK = f"{PORTAL}/rest/1/{CODE}/"
OAUTH_URL = "https://oauth.example.test/oauth/token/"
CLIENT_ID = "local.5fa95159e99329.13335518"
CLIENT_SECRET = "b24-client-secret-5a4b3c2d1e0f"
REFRESH_TOKEN = "b24-refresh-token-0f9e8d7c6b5a"

#: The docs: a repeated register within 30 minutes may return the existing CALL_ID.
REREGISTER_SECONDS = 30 * 60
ACCESS_SECONDS = 3600
NOT_FOUND = "Call is not found (call should be registered prior to finishing)"
NOT_FINISHED = "Call is not found in the statistic table. It looks like it is not finished yet."
#: Methods the docs say "work only in the context of an application".
APP_ONLY = frozenset(
    {
        "telephony.externalcall.register",
        "telephony.externalcall.finish",
        "telephony.externalline.add",
        "telephony.externalline.get",
        "telephony.externalline.update",
        "telephony.externalline.delete",
    }
)
SCOPE = {"telephony": "telephony", "voximplant": "telephony", "crm": "crm", "tasks": "task"}
SCOPE.update(user="user", profile="")  # `profile` needs no scope


# -- envelopes, as the docs print them (also for respx routes in the unit tests) ---------------


def timing(now: float = 1_780_000_000.0, reset_in: float = 600) -> dict[str, Any]:
    return {
        "start": now,
        "finish": now + 0.3,
        "duration": 0.3,
        "processing": 0,
        "date_start": "2026-05-28T23:26:40+03:00",
        "date_finish": "2026-05-28T23:26:40+03:00",
        "operating_reset_at": int(now + reset_in),
        "operating": 0.22,
    }


def ok(result: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"result": result, "time": timing(), **extra})


def error(status: int, code: str, description: str, **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": code, "error_description": description, **extra})


def body(route: Any, index: int = -1) -> dict[str, Any]:
    """The JSON body of one call a respx route received."""
    return json.loads(route.calls[index].request.content)


REGISTERED = {
    "CALL_ID": "externalCall.716f1cb73def9700a23842adf9c4c568.1773130779",
    "CRM_CREATED_LEAD": None,
    "CRM_CREATED_ENTITIES": [],
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": 651,
}

FINISHED = {
    "CALL_ID": REGISTERED["CALL_ID"],
    "EXTERNAL_CALL_ID": None,
    "PORTAL_USER_ID": 7,
    "PHONE_NUMBER": "79502222919",
    "PORTAL_NUMBER": "74991111282",
    "INCOMING": "1",
    "CALL_DURATION": 135,
    "CALL_START_DATE": {},
    "CALL_STATUS": 1,
    "CALL_VOTE": 0,
    "COST": 0,
    "COST_CURRENCY": "",
    "CALL_FAILED_CODE": "200",
    "CALL_FAILED_REASON": "",
    "REST_APP_ID": "3",
    "REST_APP_NAME": "pbx-bridge",
    "CRM_ACTIVITY_ID": 7943,
    "COMMENT": None,
    "CRM_ENTITY_TYPE": "CONTACT",
    "CRM_ENTITY_ID": 651,
    "ID": 77,
}


def crm_entity(entity: str = "CONTACT", entity_id: int = 651, owner: int = 99) -> dict[str, Any]:
    """One row of ``telephony.externalCall.searchCrmEntities``."""
    return {
        "CRM_ENTITY_TYPE": entity,
        "CRM_ENTITY_ID": entity_id,
        "ASSIGNED_BY_ID": owner,
        "NAME": "John Doe",
        "ASSIGNED_BY": {
            "ID": str(owner),
            "TIMEMAN_STATUS": "CLOSED",
            "USER_PHONE_INNER": None,
            "WORK_PHONE": None,
            "PERSONAL_PHONE": None,
            "PERSONAL_MOBILE": None,
        },
    }


# -- the portal ---------------------------------------------------------------------------------


class Refused(Exception):
    def __init__(self, status: int, code: str, description: str) -> None:
        super().__init__(description)
        self.status, self.code, self.description = status, code, description


@dataclass
class Registration:
    call_id: str
    keys: tuple[str, ...]  # what a repeated register is matched by
    user_id: int
    phone: str
    type: int
    line: str | None
    external_id: str | None
    entity: tuple[str, int] | None
    registered_at: float
    shown: set[int] = field(default_factory=set)
    finished: dict[str, Any] | None = None  # the statistics record, once finished


@dataclass
class Portal:
    url: str = PORTAL
    clock: Callable[[], float] = time.time
    webhook_user: int = 1
    webhook_code: str = CODE
    webhook_scopes: set[str] = field(default_factory=lambda: {"crm", "telephony", "user", "task"})
    #: The docs' "works only in the context of an application", enforced for webhooks.
    app_only: bool = True
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    refresh_token: str = REFRESH_TOKEN  # the first grant
    #: Whether a used refresh token stops working is not documented ("retain the new one
    #: instead of the previous one"): by default every issued one keeps working.
    single_use_refresh: bool = False
    app_user: int = 1
    users: dict[int, dict[str, Any]] = field(
        default_factory=lambda: {
            1: {"ID": "1", "NAME": "Admin", "LAST_NAME": "", "ACTIVE": True, "ADMIN": True},
            7: {"ID": "7", "NAME": "Anna", "LAST_NAME": "Petrova", "ACTIVE": True},
            8: {"ID": "8", "NAME": "Ivan", "LAST_NAME": "Orlov", "ACTIVE": True},
            9: {"ID": "9", "NAME": "Olga", "LAST_NAME": "Sidorova", "ACTIVE": True},
        }
    )
    #: Users with the telephony permission "Call statistics — View" (voximplant.statistic.get).
    stats_viewers: set[int] | None = None  # None: everybody
    moved_to: str | None = None  # the portal's new address: the old one answers 302
    blocked: str | None = None  # "OVERLOAD_LIMIT" | "PORTAL_DELETED"
    #: method (lower case) → answers used once each before the portal's own
    canned: dict[str, list[httpx.Response]] = field(default_factory=dict)
    records: dict[int, dict[str, Any]] = field(default_factory=dict)  # CRM leads/contacts/…
    registrations: dict[str, Registration] = field(default_factory=dict)
    stats: list[dict[str, Any]] = field(default_factory=list)
    lines: dict[str, dict[str, Any]] = field(default_factory=dict)
    todos: list[dict[str, Any]] = field(default_factory=list)
    tasks: list[dict[str, Any]] = field(default_factory=list)
    activities: list[dict[str, Any]] = field(default_factory=list)
    records_attached: list[dict[str, Any]] = field(default_factory=list)
    log: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (method, params)
    tokens: dict[str, float] = field(default_factory=dict)  # access token → expiry
    issued: set[str] = field(default_factory=set)  # refresh tokens handed out (and the first)
    ids: count = field(default_factory=lambda: count(1001))

    def __post_init__(self) -> None:
        self.issued.add(self.refresh_token)

    # -- test helpers -----------------------------------------------------------------------

    def add_record(self, entity: str, phone: str, owner: int = 7, name: str = "John Doe") -> int:
        record_id = next(self.ids)
        first, _, last = name.partition(" ")
        self.records[record_id] = {
            "entity": entity,
            "ID": str(record_id),
            "NAME": first,
            "LAST_NAME": last,
            "TITLE": name,
            "ASSIGNED_BY_ID": str(owner),
            "PHONE": [{"ID": "1", "VALUE_TYPE": "WORK", "VALUE": phone}],
        }
        return record_id

    def find(self, phone: Any) -> list[tuple[str, int]]:
        """(entity, id) of the records holding this number (Bitrix24's own phone index)."""
        tail = fakecrm.last10(phone)
        return [
            (r["entity"], rid)
            for rid, r in self.records.items()
            if tail and any(fakecrm.last10(p["VALUE"]) == tail for p in r["PHONE"])
        ]

    def calls(self, method: str) -> list[dict[str, Any]]:
        """The parameters of every request for ``method`` (any case), in order."""
        return [p for m, p in self.log if m == method.lower()]

    def finished(self) -> list[Registration]:
        return [r for r in self.registrations.values() if r.finished is not None]

    # -- HTTP --------------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = f"{url.scheme}://{url.netloc.decode()}"
        if url.path.startswith("/oauth/token"):
            return self._oauth(dict(url.params))
        if self.moved_to and origin == self.url:
            location = self.moved_to + url.path + (f"?{url.query.decode()}" if url.query else "")
            return httpx.Response(302, headers={"Location": location}, text="")
        if self.blocked == "OVERLOAD_LIMIT":
            return error(503, "OVERLOAD_LIMIT", "REST API is blocked due to overload")
        if self.blocked == "PORTAL_DELETED":
            return error(500, "PORTAL_DELETED", "Portal was deleted")
        params = json.loads(request.content) if request.content else {}
        parts = url.path.strip("/").split("/")
        try:
            if len(parts) == 4 and parts[0] == "rest":  # /rest/USER/CODE/method
                method, user = parts[3].lower(), self._webhook(parts[1], parts[2], parts[3])
            elif len(parts) == 2 and parts[0] == "rest":  # /rest/method + auth
                method, user = parts[1].lower(), self._app(params.pop("auth", None))
            else:
                return error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
            self.log.append((method, params))
            canned = self.canned.get(method)
            if canned:
                return canned.pop(0)
            return ok(self._method(method, params, user))
        except Refused as exc:
            return error(exc.status, exc.code, exc.description)

    def _oauth(self, q: dict[str, str]) -> httpx.Response:
        if q.get("client_id") != self.client_id or q.get("client_secret") != self.client_secret:
            return httpx.Response(
                401, json={"error": "invalid_client", "error_description": "Invalid client"}
            )
        given = q.get("refresh_token")
        valid = {self.refresh_token} if self.single_use_refresh else self.issued
        if q.get("grant_type") != "refresh_token" or given not in valid:
            return httpx.Response(
                400, json={"error": "invalid_grant", "error_description": "Invalid grant"}
            )
        n = next(self.ids)
        access, self.refresh_token = f"b24-access-{n}", f"b24-refresh-{n}"
        self.issued.add(self.refresh_token)
        self.tokens[access] = self.clock() + ACCESS_SECONDS
        return httpx.Response(
            200,
            json={
                "access_token": access,
                "client_endpoint": f"{self.moved_to or self.url}/rest/",
                "domain": "oauth.bitrix.info",
                "expires_in": ACCESS_SECONDS,
                "member_id": "a223c6b3710f85df22e9377d6c4f7553",
                "refresh_token": self.refresh_token,
                "scope": "crm,telephony,user,task",
                "server_endpoint": "https://oauth.bitrix.info/rest/",
                "status": "L",
                "user_id": self.app_user,
            },
        )

    def _webhook(self, user: str, code: str, method: str) -> int:
        if code != self.webhook_code or user != str(self.webhook_user):
            raise Refused(401, "NO_AUTH_FOUND", "Wrong authorization data")
        scope = SCOPE.get(method.lower().split(".")[0], "?")
        if scope and scope not in self.webhook_scopes:
            raise Refused(
                403,
                "insufficient_scope",
                "The request requires higher privileges than provided by the webhook token",
            )
        if self.app_only and method.lower() in APP_ONLY:
            raise Refused(
                400, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method"
            )
        return self.webhook_user

    def _app(self, token: Any) -> int:
        expires = self.tokens.get(str(token))
        if expires is None:
            raise Refused(401, "NO_AUTH_FOUND", "Wrong authorization data")
        if expires <= self.clock():
            raise Refused(401, "expired_token", "The access token provided has expired.")
        return self.app_user

    # -- methods -----------------------------------------------------------------------------

    def _method(self, method: str, p: dict[str, Any], me: int) -> Any:
        handler = getattr(self, "m_" + method.replace(".", "_"), None)
        if handler is None:
            raise Refused(404, "ERROR_METHOD_NOT_FOUND", "Method not found!")
        return handler(p, me)

    def _user(self, value: Any) -> int:
        try:
            user = int(value)
        except (TypeError, ValueError):
            raise Refused(400, "ERROR_CORE", "USER_ID or USER_PHONE_INNER should be set") from None
        if not self.users.get(user, {}).get("ACTIVE"):
            raise Refused(400, "ERROR_CORE", "User is not found or is not active")
        return user

    def m_profile(self, p: dict[str, Any], me: int) -> Any:
        u = self.users[me]
        return {"ID": u["ID"], "ADMIN": bool(u.get("ADMIN")), "NAME": u["NAME"],
                "LAST_NAME": u["LAST_NAME"]}  # fmt: skip

    def m_user_get(self, p: dict[str, Any], me: int) -> Any:
        return [u for u in self.users.values() if u.get("ACTIVE")]

    def m_telephony_externalcall_searchcrmentities(self, p: dict[str, Any], me: int) -> Any:
        rows = []
        for entity, rid in self.find(p.get("PHONE_NUMBER")):
            row = crm_entity(entity, rid, int(self.records[rid]["ASSIGNED_BY_ID"]))
            row["NAME"] = self.records[rid]["TITLE"]
            rows.append(row)
        return rows

    def m_crm_duplicate_findbycomm(self, p: dict[str, Any], me: int) -> Any:
        found: dict[str, list[int]] = {}
        for value in p.get("values") or []:
            for entity, rid in self.find(value):
                if rid not in found.setdefault(entity, []):
                    found[entity].append(rid)
        return found or []  # nothing: an empty array

    def _get(self, entity: str, p: dict[str, Any]) -> Any:
        record = self.records.get(int(p.get("id") or 0))
        if record is None or record["entity"] != entity:
            raise Refused(400, "", "Not found")
        return {k: v for k, v in record.items() if k != "entity"}

    def m_crm_contact_get(self, p: dict[str, Any], me: int) -> Any:
        return self._get("CONTACT", p)

    def m_crm_company_get(self, p: dict[str, Any], me: int) -> Any:
        return self._get("COMPANY", p)

    def m_crm_lead_get(self, p: dict[str, Any], me: int) -> Any:
        return self._get("LEAD", p)

    def m_crm_lead_add(self, p: dict[str, Any], me: int) -> Any:
        f = p.get("fields") or {}
        phone = (f.get("PHONE") or [{}])[0].get("VALUE", "")
        owner = self._user(f.get("ASSIGNED_BY_ID") or me)
        return self.add_record("LEAD", phone, owner, str(f.get("TITLE") or "Lead"))

    def m_telephony_externalline_add(self, p: dict[str, Any], me: int) -> Any:
        number = str(p.get("NUMBER") or "")
        if not number:
            raise Refused(400, "ERROR_CORE", "NUMBER should not be empty")
        if number in self.lines:
            raise Refused(400, "ERROR_CORE", "Line already exists")
        line_id = next(self.ids)
        self.lines[number] = {"ID": line_id, "NUMBER": number, "NAME": p.get("NAME") or number,
                              "CRM_AUTO_CREATE": p.get("CRM_AUTO_CREATE") or "Y"}  # fmt: skip
        return {"ID": line_id}

    def m_telephony_externalline_get(self, p: dict[str, Any], me: int) -> Any:
        return [{k: v for k, v in line.items() if k != "ID"} for line in self.lines.values()]

    def m_telephony_externalcall_register(self, p: dict[str, Any], me: int) -> Any:
        user = self._user(p.get("USER_ID"))
        try:
            kind = int(p.get("TYPE"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            kind = 0
        if kind not in (1, 2, 3, 4, 5):
            raise Refused(400, "ERROR_CORE", "Unknown TYPE")
        start = p.get("CALL_START_DATE")
        if start is not None:
            try:
                datetime.fromisoformat(str(start))
            except ValueError:
                raise Refused(
                    400, "ERROR_CORE", "CALL_START_DATE should be in the ISO-8601 format"
                ) from None
        phone = str(p.get("PHONE_NUMBER") or "")
        if not fakecrm.digits(phone):
            raise Refused(400, "ERROR_CORE", "Unsupported phone number format")
        line = str(p["LINE_NUMBER"]) if p.get("LINE_NUMBER") else None
        ext = str(p["EXTERNAL_CALL_ID"]) if p.get("EXTERNAL_CALL_ID") else None
        keys = (phone, str(kind), str(user), line or "", ext or "")
        now = self.clock()
        for reg in self.registrations.values():
            if (
                reg.keys == keys
                and reg.finished is None
                and now - reg.registered_at < REREGISTER_SECONDS
            ):
                return self._registered(reg, None)
        entity: tuple[str, int] | None = None
        if p.get("CRM_ENTITY_TYPE") and p.get("CRM_ENTITY_ID"):
            entity = (str(p["CRM_ENTITY_TYPE"]), int(p["CRM_ENTITY_ID"]))
        found = self.find(phone)
        entity = entity or (found[0] if found else None)
        created = None
        if entity is None and int(p.get("CRM_CREATE") or 0) == 1:
            created = self.add_record("LEAD", "+" + fakecrm.digits(phone), user, "Lead " + phone)
            entity = ("LEAD", created)
        reg = Registration(
            call_id=f"externalCall.{next(self.ids):032x}.{int(now)}",
            keys=keys,
            user_id=user,
            phone=phone,
            type=kind,
            line=line,
            external_id=ext,
            entity=entity,
            registered_at=now,
        )
        if int(p.get("SHOW", 1)) == 1:  # the docs' default is 1
            reg.shown.add(user)
        self.registrations[reg.call_id] = reg
        return self._registered(reg, created)

    @staticmethod
    def _registered(reg: Registration, created: int | None) -> dict[str, Any]:
        return {
            "CALL_ID": reg.call_id,
            "CRM_CREATED_LEAD": created,
            "CRM_CREATED_ENTITIES": [{"ENTITY_TYPE": "LEAD", "ENTITY_ID": created}]
            if created
            else [],
            "CRM_ENTITY_TYPE": reg.entity[0] if reg.entity else None,
            "CRM_ENTITY_ID": reg.entity[1] if reg.entity else None,
        }

    def _open(self, p: dict[str, Any]) -> Registration | None:
        reg = self.registrations.get(str(p.get("CALL_ID") or ""))
        return reg if reg is not None and reg.finished is None else None

    @staticmethod
    def _users(value: Any, default: int) -> list[int]:
        if value is None:
            return [default]
        return [int(v) for v in (value if isinstance(value, list) else [value])]

    def m_telephony_externalcall_show(self, p: dict[str, Any], me: int) -> Any:
        reg = self._open(p)
        if reg is None:
            return False  # "false — call not found"
        reg.shown.update(self._users(p.get("USER_ID"), reg.user_id))
        return True

    def m_telephony_externalcall_hide(self, p: dict[str, Any], me: int) -> Any:
        reg = self._open(p)
        if reg is None:
            return False
        reg.shown.difference_update(self._users(p.get("USER_ID"), reg.user_id))
        return True

    def m_telephony_externalcall_finish(self, p: dict[str, Any], me: int) -> Any:
        if not isinstance(p.get("CALL_ID"), str):
            raise Refused(400, "INVALID_ARGUMENT", "CALL_ID must be a string")
        user = self._user(p.get("USER_ID"))
        reg = self._open(p)
        if reg is None:
            raise Refused(400, "ERROR_CORE", NOT_FOUND)
        duration = int(p.get("DURATION") or 0)
        code = str(p.get("STATUS_CODE") or ("200" if duration > 0 else "304"))
        activity = next(self.ids) if reg.entity else None
        reg.finished = {
            "ID": next(self.ids),
            "CALL_ID": reg.call_id,
            "EXTERNAL_CALL_ID": reg.external_id,
            "PORTAL_USER_ID": user,
            "PHONE_NUMBER": reg.phone,
            "PORTAL_NUMBER": reg.line or "",
            "INCOMING": str(reg.type),
            "CALL_DURATION": duration,
            "CALL_STATUS": 1 if code == "200" else 0,
            "CALL_FAILED_CODE": code,
            "CALL_FAILED_REASON": str(p.get("FAILED_REASON") or ""),
            "CRM_ACTIVITY_ID": activity,
            "CRM_ENTITY_TYPE": reg.entity[0] if reg.entity else None,
            "CRM_ENTITY_ID": reg.entity[1] if reg.entity else None,
        }
        reg.shown.clear()  # "the method hides the card"
        self.stats.append(reg.finished)
        return dict(reg.finished)

    def m_telephony_externalcall_attachrecord(self, p: dict[str, Any], me: int) -> Any:
        reg = self.registrations.get(str(p.get("CALL_ID") or ""))
        if reg is None or reg.finished is None:
            raise Refused(400, "ERROR_CORE", NOT_FINISHED)
        name = str(p.get("FILENAME") or "")
        if not name and not p.get("RECORD_URL"):
            raise Refused(
                400,
                "ERROR_CORE",
                "Required parameters are not set. Request should contain either URL or"
                " FILENAME parameter",
            )
        if name and not name.lower().endswith((".mp3", ".wav")):
            raise Refused(400, "ERROR_CORE", "Wrong file extension. Only wav and mp3 are allowed")
        file_id = next(self.ids)
        self.records_attached.append({"CALL_ID": reg.call_id, "FILE_ID": file_id, **p})
        return {"FILE_ID": file_id}

    def m_voximplant_statistic_get(self, p: dict[str, Any], me: int) -> Any:
        if self.stats_viewers is not None and me not in self.stats_viewers:
            raise Refused(403, "ACCESS_DENIED", "Access denied!")
        f = p.get("FILTER") or {}
        return [
            {k: (str(v) if v is not None else None) for k, v in row.items()}
            for row in self.stats
            if all(str(row.get(k)) == str(v) for k, v in f.items())
        ]

    def m_crm_activity_todo_add(self, p: dict[str, Any], me: int) -> Any:
        owner = self.records.get(int(p.get("ownerId") or 0))
        if owner is None:
            raise Refused(400, "NOT_FOUND", "Element not found")
        self._user(p.get("responsibleId"))
        todo_id = next(self.ids)
        self.todos.append({"id": todo_id, **p})
        return {"id": todo_id}

    def m_tasks_task_add(self, p: dict[str, Any], me: int) -> Any:
        f = p.get("fields") or {}
        self._user(f.get("RESPONSIBLE_ID"))
        task_id = next(self.ids)
        self.tasks.append({"id": task_id, **f})
        return {"task": {"id": str(task_id), "title": f.get("TITLE")}}

    def m_crm_activity_add(self, p: dict[str, Any], me: int) -> Any:
        activity_id = next(self.ids)
        self.activities.append({"ID": activity_id, **(p.get("fields") or {})})
        return activity_id


# -- behind aiohttp: the contract suite and the reliability harness ---------------------------


class FakeBitrix24(FakeCRM):
    """The :class:`Portal` and its OAuth server on one loopback address, reached by an OAuth
    app (``/rest/<method>``, token at ``/oauth/token/``). A call counts as written when it is
    *finished* (the call is in Bitrix24's statistics and timeline); a to-do or task names its
    call in the description (``bridge.fakecrm.TEMPLATES``)."""

    causes: ClassVar[dict[str, str]] = {
        fakecrm.RATE_LIMIT_SECONDS: "OPERATION_TIME_LIMIT",
        fakecrm.RATE_LIMIT_DATE: "OPERATION_TIME_LIMIT",
        fakecrm.UNAUTHORIZED: "NO_AUTH_FOUND",
        fakecrm.FORBIDDEN: "ACCESS_DENIED",
    }

    @cached_property
    def portal(self) -> Portal:
        return Portal(url=self.base_url, clock=self.clock)

    def answer(self, seen: Recorded) -> Any:
        return relay(self.portal(as_httpx(self.base_url, seen)))

    def error_json(self, status: int) -> Any:
        code, text = {
            401: ("NO_AUTH_FOUND", "Wrong authorization data"),
            403: ("ACCESS_DENIED", "REST API is available only on commercial plans"),
            429: ("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."),
            500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
        }[status]
        return {"error": code, "error_description": text}

    def call_key(self, seen: Recorded) -> str | None:
        """Which call a request writes (the write may still fail: see :meth:`delivered`)."""
        method = seen.path.rsplit("/", 1)[-1].lower()
        params = self.json(seen) or {}
        if method == "telephony.externalcall.register":
            return key(params.get("EXTERNAL_CALL_ID", ""), CALL)
        if method == "telephony.externalcall.finish":
            reg = self.portal.registrations.get(str(params.get("CALL_ID")))
            return key(reg.external_id or "", CALL) if reg else None
        if method == "crm.activity.add":
            return key((params.get("fields") or {}).get("ORIGIN_ID", ""), CALL)
        if method == "crm.activity.todo.add":
            return marked(params.get("description"), TASK)
        if method == "tasks.task.add":
            return marked((params.get("fields") or {}).get("DESCRIPTION"), TASK)
        return None

    def delivered(self) -> Counter[str]:
        """What the portal holds: each finished call, activity, to-do and task once per write."""
        keys: Counter[str] = Counter()
        for reg in self.portal.finished():
            keys[key(reg.external_id or "", CALL)] += 1
        for activity in self.portal.activities:
            keys[key(str(activity.get("ORIGIN_ID")), CALL)] += 1
        for text in [t.get("description") for t in self.portal.todos] + [
            t.get("DESCRIPTION") for t in self.portal.tasks
        ]:
            found = marked(text, TASK)
            if found:
                keys[found] += 1
        return keys


def reliability_table(base_url: str) -> dict[str, Any]:
    # An OAuth app: an inbound webhook_url must be https, and the OAuth refresh is covered too.
    return {
        "type": "bitrix24",
        "base_url": base_url,
        "oauth_url": f"{base_url}/oauth/token/",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "default_user": "1",
        **CRM_COMMON,
    }
