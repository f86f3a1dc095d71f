"""A fake Zoho CRM org (API v8) and its Zoho Accounts server, for tests and the reliability harness.

It answers what the adapter uses, in Zoho's shapes, and refuses what Zoho refuses:

- ``POST {accounts}/oauth/v2/token`` (refresh grant): Zoho answers a bad grant with HTTP 200
  and ``{"error": "invalid_code"}`` (a refresh token of another data centre is one), a bad
  client with ``invalid_client``, and more than 10 access tokens from one refresh token in
  10 minutes with HTTP 400 ``{"error": "Access Denied", ...}``.
- API calls need ``Authorization: Zoho-oauthtoken <token>``: no header (or ``Bearer``) is 401
  ``AUTHENTICATION_FAILURE``; an unknown or expired token, or a token used on another data
  centre's API domain, 401 ``INVALID_TOKEN``.
- ``GET /crm/v8/{module}/search``: exactly one of criteria/email/phone/word; no match is
  ``204 No Content`` with an empty body.
- ``POST /crm/v8/{module}`` and ``/upsert``: at most 100 records; an unknown field name or a
  value of the wrong type/format is 400 ``INVALID_DATA`` naming the field (``details.api_name``);
  a missing mandatory field 400 ``MANDATORY_NOT_FOUND``; a value already held by a unique field
  400 ``DUPLICATE_DATA`` with the existing record; success 201 with
  ``{"data": [{"code": "SUCCESS", "details": {"id": ...}, "message": "record added", ...}]}``.
- ``GET /crm/v8/settings/fields?module=``, ``GET /crm/v8/users``, ``GET /crm/v8/org``.
- API credits per rolling 24 h (``credits``) and a concurrency-style ``throttle()``: HTTP 429
  ``TOO_MANY_REQUESTS``.

What the fake assumes where Zoho's docs are silent is listed in docs/adapters/zoho.md
("Unknowns"): how the ``phone`` search matches stored formats (here: the same digits,
separators ignored) and the exact body of a 429.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from itertools import count
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

from bridge.fakecrm import (
    CALL,
    CRM_COMMON,
    TASK,
    FakeCRM,
    Recorded,
    as_httpx,
    digits,
    marked,
    relay,
)

ACCOUNTS = "https://accounts.zoho.eu"
API_DOMAIN = "https://www.zohoapis.eu"
CLIENT_ID = "1000.FAKEZOHOCLIENT0123456789ABCDEF"
CLIENT_SECRET = "fake-zoho-client-secret-0123456789abcdef"
REFRESH_TOKEN = "1000.fakezohorefresh0123456789.abcdef0123456789"
SCOPE = "ZohoCRM.modules.ALL ZohoCRM.settings.fields.READ ZohoCRM.users.READ ZohoCRM.org.READ"
TOKEN_SECONDS = 3600
TOKENS_PER_TEN_MINUTES = 10  # Zoho Accounts: per refresh token
MAX_RECORDS = 100
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}[+-]\d{2}:\d{2}$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DURATION = re.compile(r"^\d{1,4}:[0-5]\d$")  # Call_Duration, mm:ss
ORG_ID = "20099999999"
ADMIN_ID = "4150868000000225013"
AGENT_ID = "4150868000000225099"


def _f(api_name: str, data_type: str = "text", **extra: Any) -> dict[str, Any]:
    """One field of ``settings/fields`` as Zoho describes it (the keys the adapter reads)."""
    label = api_name.replace("_", " ").replace(" s", "").strip()
    field_ = {
        "api_name": api_name,
        "field_label": label,
        "display_label": label,
        "data_type": data_type,
        "json_type": "jsonobject" if data_type in ("lookup", "ownerlookup") else "string",
        "system_mandatory": False,
        "read_only": False,
        "custom_field": False,
        "visible": True,
        "length": 255,
        "pick_list_values": [],
        "id": str(4150868000000000000 + (hash(api_name) % 10**9)),
    }
    field_.update(extra)
    return field_


def picklist(*values: str) -> list[dict[str, Any]]:
    return [
        {"display_value": v, "actual_value": v, "sequence_number": i, "type": "used"}
        for i, v in enumerate(values, 1)
    ]


SCOPE_OF = {
    "settings": "ZohoCRM.settings.fields.READ",
    "users": "ZohoCRM.users.READ",
    "org": "ZohoCRM.org.READ",
}
PHONE_FIELDS = ("Phone", "Mobile", "Home_Phone", "Other_Phone", "Asst_Phone")


def standard_fields() -> dict[str, list[dict[str, Any]]]:
    """The standard layout of the modules the adapter uses (a fresh org's field API names)."""
    person = [
        _f("First_Name"),
        _f("Last_Name", system_mandatory=True),
        _f("Full_Name", read_only=True),
        _f("Email", "email"),
        _f("Phone", "phone"),
        _f("Mobile", "phone"),
        _f("Description", "textarea", length=32000),
        _f("Owner", "ownerlookup"),
        _f("Lead_Source", pick_list_values=picklist("-None-", "Advertisement", "Cold Call")),
    ]
    return {
        "Contacts": [*person, _f("Home_Phone", "phone"), _f("Other_Phone", "phone")],
        "Leads": [*person, _f("Company", system_mandatory=True)],
        "Calls": [
            _f("Subject", system_mandatory=True),
            _f(
                "Call_Type",
                "picklist",
                system_mandatory=True,
                pick_list_values=picklist("Outbound", "Inbound", "Missed"),
            ),
            _f("Call_Start_Time", "datetime", system_mandatory=True),
            _f("Call_Duration"),
            _f("Call_Duration_in_seconds", "integer", read_only=True),
            _f(
                "Call_Result",
                "picklist",
                pick_list_values=picklist(
                    "-None-",
                    "Interested",
                    "Not interested",
                    "No response/Busy",
                    "Requested more info",
                    "Requested call back",
                    "Invalid number",
                ),
            ),
            _f("Call_Purpose", "picklist", pick_list_values=picklist("-None-", "Prospecting")),
            _f("Description", "textarea", length=32000),
            _f("Who_Id", "lookup"),
            _f("What_Id", "lookup"),
            _f("Owner", "ownerlookup"),
            _f("Caller_ID", "phone"),
            _f("Dialled_Number", "phone"),
            _f("Voice_Recording__s", "website"),
            _f(
                "Outgoing_Call_Status",
                "picklist",
                pick_list_values=picklist("Scheduled", "Completed", "Overdue", "Cancelled"),
            ),
        ],
        "Tasks": [
            _f("Subject", system_mandatory=True),
            _f("Due_Date", "date"),
            _f(
                "Status",
                "picklist",
                pick_list_values=picklist(
                    "Not Started", "Deferred", "In Progress", "Completed", "Waiting for input"
                ),
            ),
            _f(
                "Priority",
                "picklist",
                pick_list_values=picklist("High", "Highest", "Low", "Lowest", "Normal"),
            ),
            _f("Description", "textarea", length=32000),
            _f("Who_Id", "lookup"),
            _f("What_Id", "lookup"),
            _f("Owner", "ownerlookup"),
            _f("Remind_At", "event_reminder"),
            _f("Send_Notification_Email", "boolean"),
        ],
    }


@dataclass
class Answer:
    """What the fake answers: status, headers and a JSON body (None = no body)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    text: str | None = None  # a body that is not JSON (a gateway's HTML page)

    def httpx(self) -> httpx.Response:
        if self.text is not None:
            return httpx.Response(self.status, text=self.text, headers=self.headers)
        if self.body is None:
            return httpx.Response(self.status, headers=self.headers)
        return httpx.Response(self.status, json=self.body, headers=self.headers)


def error(code: str, message: str, status: int = 400, **details: Any) -> Answer:
    """Zoho's top-level error envelope."""
    return Answer(status, {"code": code, "details": details, "message": message, "status": "error"})


def record_error(code: str, message: str, **details: Any) -> dict[str, Any]:
    return {"code": code, "details": details, "message": message, "status": "error"}


def user(user_id: str, name: str, email: str, role: str, profile: str) -> dict[str, Any]:
    """A user as ``GET /crm/v8/users`` lists one."""
    return {
        "id": user_id,
        "full_name": name,
        "email": email,
        "status": "active",
        "role": {"name": role, "id": "4150868000000026005"},
        "profile": {"name": profile, "id": "4150868000000026011"},
    }


@dataclass
class ZohoOrg:
    """One Zoho CRM org in one data centre, with its users, records and field layout."""

    accounts_url: str = ACCOUNTS
    api_domain: str = API_DOMAIN
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    refresh_tokens: set[str] = field(default_factory=lambda: {REFRESH_TOKEN})
    clock: Callable[[], float] = time.time
    credits: int | None = None  # per rolling 24 h; None = unlimited
    #: module → fields (a test removes or adds fields to play an org's own layout)
    fields: dict[str, list[dict[str, Any]]] = field(default_factory=standard_fields)
    users: list[dict[str, Any]] = field(
        default_factory=lambda: [
            user(ADMIN_ID, "Patricia Boyle", "patricia@zylker.com", "CEO", "Administrator"),
            user(AGENT_ID, "Anna Petrova", "anna@zylker.com", "Manager", "Standard"),
        ]
    )
    records: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    #: unique field API names per module (DUPLICATE_DATA), e.g. a custom PBX call id field
    unique: dict[str, set[str]] = field(default_factory=dict)
    #: scopes the refresh token was generated without (their endpoints answer 401)
    missing_scopes: set[str] = field(default_factory=set)
    _tokens: dict[str, float] = field(default_factory=dict)  # access token → expiry
    _issued: list[tuple[str, float]] = field(default_factory=list)  # (refresh token, when)
    _spent: list[float] = field(default_factory=list)  # credit use stamps
    _throttled: int = 0
    _ids: Any = field(default_factory=lambda: count(4150868000001000001))

    # -- what tests set up -----------------------------------------------------------------

    def add(self, module: str, **values: Any) -> str:
        """A record already in the CRM (e.g. a contact whose number will call)."""
        record_id = str(next(self._ids))
        self.records.setdefault(module, {})[record_id] = {
            "id": record_id,
            "Owner": {"id": ADMIN_ID, "name": "Patricia Boyle", "email": "patricia@zylker.com"},
            **values,
        }
        return record_id

    def throttle(self, times: int = 1) -> None:
        """The next ``times`` API calls are refused with 429 (concurrency exceeded)."""
        self._throttled = times

    def expire_tokens(self) -> None:
        self._tokens.clear()

    def drop_field(self, module: str, api_name: str) -> None:
        self.fields[module] = [f for f in self.fields[module] if f["api_name"] != api_name]

    def field_of(self, module: str, api_name: str) -> dict[str, Any] | None:
        return next((f for f in self.fields.get(module, []) if f["api_name"] == api_name), None)

    def created(self, module: str) -> list[dict[str, Any]]:
        return list(self.records.get(module, {}).values())

    # -- transport adapters ------------------------------------------------------------------

    def respx(self, request: httpx.Request) -> httpx.Response:
        """A respx side effect: ``router.route(host=...).mock(side_effect=org.respx)``."""
        self.requests.append(request)
        answer = self.handle(
            request.method,
            str(request.url),
            {k.lower(): v for k, v in request.headers.items()},
            request.content,
        )
        return answer.httpx()

    def handle(self, method: str, url: str, headers: dict[str, str], body: bytes) -> Answer:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        if parts.path == "/oauth/v2/token":
            if origin != self.accounts_url.rstrip("/"):
                # Another data centre's accounts server does not know this org's grant.
                return Answer(200, {"error": "invalid_code"})
            form = {**query, **dict(parse_qsl(body.decode() if body else ""))}
            return self._token(method, form)
        if origin != self.api_domain.rstrip("/"):
            return error("INVALID_TOKEN", "invalid oauth token", 401)
        refused = self._auth(headers.get("authorization", ""))
        if refused is not None:
            return refused
        if self._throttled > 0:
            self._throttled -= 1
            return self._too_many()
        if self.credits is not None:
            now = self.clock()
            self._spent = [s for s in self._spent if s > now - 86400]
            if len(self._spent) >= self.credits:
                return self._too_many()
            self._spent.append(now)
        return self._api(method, parts.path, query, body)

    # -- Zoho Accounts -----------------------------------------------------------------------

    def _token(self, method: str, form: dict[str, str]) -> Answer:
        if method != "POST":
            return Answer(405, {"error": "invalid_request"})
        if form.get("grant_type") != "refresh_token":
            return Answer(200, {"error": "unsupported_grant_type"})
        if form.get("client_id") != self.client_id or form.get("client_secret") != (
            self.client_secret
        ):
            return Answer(200, {"error": "invalid_client"})
        refresh = form.get("refresh_token", "")
        if refresh not in self.refresh_tokens:
            return Answer(200, {"error": "invalid_code"})
        now = self.clock()
        recent = [t for r, t in self._issued if r == refresh and t > now - 600]
        if len(recent) >= TOKENS_PER_TEN_MINUTES:
            return Answer(
                400,
                {
                    "error_description": "You have made too many requests continuously."
                    " Please try again after some time.",
                    "error": "Access Denied",
                    "status": "failure",
                },
            )
        self._issued.append((refresh, now))
        token = f"1000.{next(self._ids):x}.{abs(hash((refresh, now))):x}"
        self._tokens[token] = now + TOKEN_SECONDS
        return Answer(
            200,
            {
                "access_token": token,
                "scope": SCOPE,
                "api_domain": self.api_domain,
                "token_type": "Bearer",
                "expires_in": TOKEN_SECONDS,
            },
        )

    def _auth(self, header: str) -> Answer | None:
        scheme, _, token = header.partition(" ")
        if scheme != "Zoho-oauthtoken" or not token:
            return error("AUTHENTICATION_FAILURE", "Authentication failed", 401)
        expiry = self._tokens.get(token)
        if expiry is None or expiry <= self.clock():
            return error("INVALID_TOKEN", "invalid oauth token", 401)
        return None

    def _too_many(self) -> Answer:
        return error(
            "TOO_MANY_REQUESTS",
            "The number of API requests has exceeded the allowed limit.",
            429,
        )

    # -- CRM API -----------------------------------------------------------------------------

    def _api(self, method: str, path: str, query: dict[str, str], body: bytes) -> Answer:
        segments = path.strip("/").split("/")
        if segments[:2] != ["crm", "v8"] or len(segments) < 3:
            return error(
                "INVALID_URL_PATTERN",
                "Please check if the URL trying to access is a correct one",
                404,
            )
        rest = segments[2:]
        scope = SCOPE_OF.get(rest[0], "ZohoCRM.modules.ALL")
        if scope in self.missing_scopes:
            return error("OAUTH_SCOPE_MISMATCH", "invalid oauth scope to access this URL", 401)
        if rest == ["settings", "fields"] and method == "GET":
            return self._fields(query)
        if rest == ["users"] and method == "GET":
            return self._users(query)
        if rest == ["org"] and method == "GET":
            return Answer(
                200,
                {
                    "org": [
                        {
                            "id": ORG_ID,
                            "company_name": "Zylker",
                            "domain_name": "org20099999999",
                            "country_code": "DE",
                            "time_zone": "Europe/Berlin",
                            "currency": "Euro - EUR",
                            "primary_email": "patricia@zylker.com",
                            "license_details": {"paid": True, "paid_type": "enterprise"},
                        }
                    ]
                },
            )
        module = rest[0]
        if module not in self.fields:
            return error(
                "INVALID_MODULE",
                "The module name given seems to be invalid",
                400,
                resource_path_index=0,
            )
        if rest[1:] == ["search"] and method == "GET":
            return self._search(module, query)
        if rest[1:] == [] and method == "POST":
            return self._insert(module, body, upsert=False)
        if rest[1:] == ["upsert"] and method == "POST":
            return self._insert(module, body, upsert=True)
        return error(
            "INVALID_REQUEST_METHOD", "The http request method type is not a valid one", 400
        )

    def _fields(self, query: dict[str, str]) -> Answer:
        module = query.get("module")
        if not module:
            return error(
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                400,
                param="module",
            )
        if module not in self.fields:
            return error(
                "INVALID_MODULE", "The module name given seems to be invalid", 400, param="module"
            )
        return Answer(200, {"fields": self.fields[module]})

    def _users(self, query: dict[str, str]) -> Answer:
        kind = query.get("type", "AllUsers")
        users = self.users if kind != "CurrentUser" else self.users[:1]
        if kind == "ActiveUsers":
            users = [u for u in users if u.get("status") == "active"]
        return Answer(
            200,
            {
                "users": users,
                "info": {"per_page": 200, "count": len(users), "page": 1, "more_records": False},
            },
        )

    def _search(self, module: str, query: dict[str, str]) -> Answer:
        given = [k for k in ("criteria", "email", "phone", "word") if query.get(k)]
        if len(given) != 1:
            return error(
                "REQUIRED_PARAM_MISSING",
                "One of the expected parameter is missing",
                400,
                param="criteria/email/phone/word",
            )
        if given != ["phone"]:
            return error("NOT_SUPPORTED", "only phone search is faked", 400)
        wanted = digits(query["phone"])
        if len(wanted) < 2:
            return error(
                "INVALID_QUERY",
                "Please check whether the input values are correct",
                400,
                param="phone",
            )
        hits = [
            r
            for r in self.records.get(module, {}).values()
            if any(digits(r.get(f)) == wanted for f in PHONE_FIELDS if r.get(f))
        ]
        if not hits:
            return Answer(204)  # Zoho: no body at all
        return Answer(
            200,
            {
                "data": hits,
                "info": {"per_page": 200, "count": len(hits), "page": 1, "more_records": False},
            },
        )

    def _insert(self, module: str, body: bytes, *, upsert: bool) -> Answer:
        try:
            doc = json.loads(body or b"")
        except ValueError:
            return error("INVALID_DATA", "body", 400)
        items = doc.get("data") if isinstance(doc, dict) else None
        if not isinstance(items, list) or not items:
            return error(
                "INVALID_DATA", "body", 400, expected_data_type="jsonarray", api_name="data"
            )
        if len(items) > MAX_RECORDS:
            return error("LIMIT_EXCEEDED", "Record count exceeded", 400, limit=MAX_RECORDS)
        answers, failed = [], False
        for n, item in enumerate(items):
            problem = (
                self._validate(module, n, item)
                if isinstance(item, dict)
                else record_error(
                    "INVALID_DATA",
                    "invalid data",
                    json_path=f"$.data[{n}]",
                    expected_data_type="jsonobject",
                )
            )
            existing = None
            if problem is None:
                existing, problem = self._unique(module, n, item, doc, upsert)
            if problem is not None:
                answers.append(problem)
                failed = True
                continue
            answers.append(self._store(module, item, existing, upsert))
        # One failing record of one: Zoho answers 400 with the record's error in data[].
        return Answer(
            400 if failed and len(items) == 1 else 201 if not failed else 207, {"data": answers}
        )

    def _validate(self, module: str, n: int, item: dict[str, Any]) -> dict[str, Any] | None:
        known = {f["api_name"]: f for f in self.fields[module]}
        for name, value in item.items():
            where = {"api_name": name, "json_path": f"$.data[{n}].{name}"}
            if name == "$se_module":
                if value not in ("Leads", "Accounts", "Deals", "Campaigns", "Cases"):
                    return record_error("INVALID_DATA", "invalid data", **where)
                continue
            spec = known.get(name)
            if spec is None:
                return record_error("INVALID_DATA", "invalid data", **where)
            if spec["read_only"]:
                return record_error("INVALID_DATA", "invalid data", **where)
            bad = self._bad_value(spec, value)
            if bad is not None:
                return record_error("INVALID_DATA", "invalid data", **where, expected_data_type=bad)
        for spec in self.fields[module]:
            if spec["system_mandatory"] and item.get(spec["api_name"]) in (None, ""):
                return record_error(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    api_name=spec["api_name"],
                    json_path=f"$.data[{n}].{spec['api_name']}",
                )
        if module == "Calls":
            completed = item.get("Outgoing_Call_Status") in (None, "Completed")
            if completed and not item.get("Call_Duration"):
                return record_error(
                    "MANDATORY_NOT_FOUND",
                    "required field not found",
                    api_name="Call_Duration",
                    json_path=f"$.data[{n}].Call_Duration",
                )
        if "What_Id" in item and "$se_module" not in item:
            return record_error(
                "DEPENDENT_FIELD_MISSING",
                "Dependent Fields missing",
                api_name="$se_module",
                json_path=f"$.data[{n}].$se_module",
            )
        return None

    def _bad_value(self, spec: dict[str, Any], value: Any) -> str | None:
        kind = spec["data_type"]
        if kind in ("lookup", "ownerlookup"):
            if not (isinstance(value, dict) and isinstance(value.get("id"), str)):
                return "jsonobject"
            if kind == "ownerlookup" and value["id"] not in {u["id"] for u in self.users}:
                return "ownerlookup"
            if kind == "lookup" and not any(value["id"] in recs for recs in self.records.values()):
                return "lookup"
            return None
        if kind == "datetime":
            ok = isinstance(value, str) and DATETIME.match(value)
            if ok:
                try:
                    datetime.fromisoformat(value)
                except ValueError:
                    ok = None
            return None if ok else "datetime"
        if kind == "date":
            return None if isinstance(value, str) and DATE.match(value) else "date"
        if kind == "integer":
            return None if isinstance(value, int) and not isinstance(value, bool) else "integer"
        if kind == "boolean":
            return None if isinstance(value, bool) else "boolean"
        if kind == "event_reminder":
            ok = isinstance(value, dict) and str(value.get("ALARM", "")).startswith("FREQ=")
            return None if ok else "jsonobject"
        if not isinstance(value, str):
            return "text"
        if kind == "picklist":
            allowed = {v["actual_value"] for v in spec["pick_list_values"]}
            return None if value in allowed else "picklist"
        if spec["api_name"] == "Call_Duration" and not DURATION.match(value):
            return "text"
        if len(value) > int(spec.get("length") or 255):
            return "text"
        return None

    def _unique(
        self, module: str, n: int, item: dict[str, Any], doc: dict[str, Any], upsert: bool
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        keys = set(self.unique.get(module, set()))
        if upsert:
            keys |= set(doc.get("duplicate_check_fields") or [])
        for name in sorted(keys):
            value = item.get(name)
            if value in (None, ""):
                continue
            for record in self.records.get(module, {}).values():
                if record.get(name) == value:
                    if upsert:
                        return record, None
                    return None, record_error(
                        "DUPLICATE_DATA",
                        "duplicate data",
                        api_name=name,
                        json_path=f"$.data[{n}].{name}",
                        duplicate_record={
                            "id": record["id"],
                            "module": {"api_name": module, "id": "4150868000000002175"},
                            "Owner": record.get("Owner"),
                        },
                    )
        return None, None

    def _store(
        self, module: str, item: dict[str, Any], existing: dict[str, Any] | None, upsert: bool
    ) -> dict[str, Any]:
        stamp = datetime.fromtimestamp(self.clock()).astimezone().isoformat(timespec="seconds")
        who = {"name": "Patricia Boyle", "id": ADMIN_ID}
        if existing is not None:
            existing.update(item)
            record_id, action, message = existing["id"], "update", "record updated"
        else:
            record_id = str(next(self._ids))
            self.records.setdefault(module, {})[record_id] = {
                "id": record_id,
                "Owner": {"id": ADMIN_ID, "name": "Patricia Boyle", "email": "patricia@zylker.com"},
                "Created_Time": stamp,
                **item,
            }
            action, message = "insert", "record added"
        answer: dict[str, Any] = {
            "code": "SUCCESS",
            "details": {
                "Modified_Time": stamp,
                "Modified_By": who,
                "Created_Time": stamp,
                "id": record_id,
                "Created_By": who,
            },
            "message": message,
            "status": "success",
        }
        if upsert:  # upsert answers say what it did
            answer["action"] = action
        return answer


# -- on loopback (the contract suite and the reliability harness) ---------------------------

#: A custom unique field in Calls and Tasks of the loopback org: the adapter upserts by it.
CALL_ID_FIELD = "PBX_Call_ID"


class FakeZoho(FakeCRM):
    """A :class:`ZohoOrg` and its accounts server on one loopback address (its refusals and
    shapes), with a unique ``PBX_Call_ID`` field in Calls and Tasks so the adapter's upserts by
    the PBX call id are exercised. Records name their call in ``Description`` (``TEMPLATES``)."""

    @cached_property
    def org(self) -> ZohoOrg:
        org = ZohoOrg(accounts_url=self.base_url, api_domain=self.base_url, clock=self.clock)
        for module in ("Calls", "Tasks"):
            org.fields[module].append(_f(CALL_ID_FIELD, custom_field=True))
            org.unique[module] = {CALL_ID_FIELD}
        return org

    def answer(self, seen: Recorded) -> Any:
        request = as_httpx(self.base_url, seen)
        headers = {k.lower(): v for k, v in request.headers.items()}
        return relay(self.org.handle(seen.method, str(request.url), headers, seen.body).httpx())

    def error_json(self, status: int) -> Any:
        code, message = {
            401: ("INVALID_TOKEN", "invalid oauth token"),
            403: ("NO_PERMISSION", "permission denied"),
            429: ("TOO_MANY_REQUESTS", "The number of API requests has exceeded the limit."),
            500: ("INTERNAL_ERROR", "Internal server error occurred."),
        }[status]
        return error(code, message, status).body

    def call_key(self, seen: Recorded) -> str | None:
        module = seen.path.removesuffix("/upsert")
        kind = {"/crm/v8/Calls": CALL, "/crm/v8/Tasks": TASK}.get(module)
        if seen.method != "POST" or kind is None:
            return None
        record = ((self.json(seen) or {}).get("data") or [{}])[0]
        return marked(record.get("Description"), kind)


def reliability_table(base_url: str) -> dict[str, Any]:
    """``[adapters.zoho]`` pointed at a :class:`FakeZoho`: the accounts server and the org's
    API on the fake; the PBX call id field makes every write an upsert (Zoho's duplicate check:
    a repeated write updates the same record)."""
    return {
        "type": "zoho",
        "accounts_url": base_url,
        "base_url": base_url,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "call_id_field": CALL_ID_FIELD,
        "default_user": ADMIN_ID,
        **CRM_COMMON,
    }
