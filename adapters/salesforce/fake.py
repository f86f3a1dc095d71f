"""A Salesforce org in memory, answering httpx requests as the REST API and its OAuth token
endpoint do.

Used as a respx side effect by the unit tests and, through a thin aiohttp wrapper, by the
reliability harness. It refuses what Salesforce refuses, in its error-array shape: no or an
expired token (401 ``INVALID_SESSION_ID``), a spent API allowance (403
``REQUEST_LIMIT_EXCEEDED``), unknown fields (``INVALID_FIELD``), missing required fields
(``REQUIRED_FIELD_MISSING`` with ``fields``), bad picklist values
(``INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST``), references to records that do not exist, and
SOSL with an unescaped reserved character (``MALFORMED_SEARCH``). The token endpoint refuses
a wrong client id or secret and anything but a form-encoded client credentials grant.
SOQL is understood only for the queries the adapter sends (others: ``MALFORMED_QUERY``).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any
from urllib.parse import parse_qs

import httpx

from bridge.fakecrm import CALL, CRM_COMMON, TASK, FakeCRM, Recorded, as_httpx, digits, key, relay

CLIENT_ID = "3MVG9fakeConsumerKey.onlinepbx.bridge"
CLIENT_SECRET = "F4KE5ECRET0123456789ABCDEF"
INSTANCE = "https://acme.my.salesforce.com"
ORG_ID = "00D5g000004FAKE"
PREFIX = {"Contact": "003", "Lead": "00Q", "Task": "00T", "User": "005"}
RESERVED = set("?&|!{}[]()^~*:\"'+-")

PICKLISTS = {
    ("Task", "Status"): {
        "Not Started",
        "In Progress",
        "Completed",
        "Waiting on someone else",
        "Deferred",
    },
    ("Task", "Priority"): {"High", "Normal", "Low"},
    ("Task", "TaskSubtype"): {"Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"},
    ("Task", "CallType"): {"Internal", "Inbound", "Outbound"},
    ("Lead", "LeadSource"): {"Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"},
}
FIELDS = {
    "Task": {
        "Subject",
        "Status",
        "Priority",
        "TaskSubtype",
        "CallType",
        "CallDurationInSeconds",
        "CallObject",
        "CallDisposition",
        "ActivityDate",
        "Description",
        "WhoId",
        "WhatId",
        "OwnerId",
        "IsReminderSet",
        "ReminderDateTime",
    },
    "Lead": {"LastName", "FirstName", "Company", "Phone", "MobilePhone", "OwnerId", "LeadSource"},
    "Contact": {"LastName", "FirstName", "Phone", "MobilePhone", "OwnerId", "AccountId"},
}
REQUIRED = {"Lead": ("LastName", "Company"), "Contact": ("LastName",), "Task": ()}
LABEL = {
    "CallType": "Call Type",
    "Status": "Status",
    "Priority": "Priority",
    "TaskSubtype": "Task Subtype",
    "LeadSource": "Lead Source",
}


def errors(status: int, code: str, message: str, fields: list[str] | None = None) -> httpx.Response:
    entry: dict[str, Any] = {"message": message, "errorCode": code}
    if fields is not None:
        entry["fields"] = fields
    return httpx.Response(status, json=[entry])


class Refused(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.text)
        self.response = response


@dataclass
class FakeSalesforce:
    instance_url: str = INSTANCE
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET
    users: list[dict[str, Any]] = field(
        default_factory=lambda: [
            {
                "Id": "005000000000001AAA",
                "Name": "Anna Petrova",
                "Username": "anna@acme.io",
                "Email": "anna@acme.io",
            },
            {
                "Id": "005000000000002AAA",
                "Name": "Ivan Orlov",
                "Username": "ivan@acme.io",
                "Email": "ivan@acme.io",
            },
        ]
    )
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # Id → record
    requests: list[httpx.Request] = field(default_factory=list)
    tokens: set[str] = field(default_factory=set)
    tokens_issued: int = 0
    requests_left: int | None = None  # the org's API allowance; None = plenty
    page_size: int = 2000  # SOQL batch size
    hidden_task_fields: set[str] = field(default_factory=set)  # no field-level access
    canned: dict[str, httpx.Response] = field(default_factory=dict)  # path → answer
    _last_rows: list[dict[str, Any]] = field(default_factory=list)
    _ids: Any = field(default_factory=lambda: itertools.count(1))
    _clock: Any = field(default_factory=lambda: itertools.count(1))

    # -- helpers for tests ----------------------------------------------------------------

    def add(self, sobject: str, **values: Any) -> str:
        rid = f"{PREFIX[sobject]}{next(self._ids):012d}AAA"
        self.records[rid] = {
            "attributes": {
                "type": sobject,
                "url": f"/services/data/v62.0/sobjects/{sobject}/{rid}",
            },
            "Id": rid,
            "CreatedDate": f"2026-05-01T10:00:{next(self._clock) % 60:02d}.000+0000",
            "_seq": next(self._clock),
            **values,
        }
        return rid

    def of(self, sobject: str) -> list[dict[str, Any]]:
        return [r for r in self.records.values() if r["attributes"]["type"] == sobject]

    def expire_tokens(self) -> None:
        self.tokens.clear()

    # -- HTTP -----------------------------------------------------------------------------

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path in self.canned:
            return self.canned[request.url.path]
        try:
            if request.url.path == "/services/oauth2/token":
                return self._token(request)
            return self._api(request)
        except Refused as exc:
            return exc.response

    def _token(self, request: httpx.Request) -> httpx.Response:
        kind = request.headers.get("content-type", "")
        form = (
            {k: v[-1] for k, v in parse_qs(request.content.decode()).items()}
            if kind.startswith("application/x-www-form-urlencoded")
            else {}
        )
        if form.get("grant_type") != "client_credentials":
            return httpx.Response(
                400,
                json={
                    "error": "unsupported_grant_type",
                    "error_description": "grant type not supported",
                },
            )
        if form.get("client_id") != self.client_id:
            return httpx.Response(
                400,
                json={
                    "error": "invalid_client_id",
                    "error_description": "client identifier invalid",
                },
            )
        if form.get("client_secret") != self.client_secret:
            return httpx.Response(
                400,
                json={"error": "invalid_client", "error_description": "invalid client credentials"},
            )
        self.tokens_issued += 1
        token = f"{ORG_ID}!AQ4AQFAKE.token.{self.tokens_issued}"
        self.tokens.add(token)
        return httpx.Response(
            200,
            json={
                "access_token": token,
                "signature": "c2lnbmF0dXJl",
                "scope": "api",
                "instance_url": self.instance_url,
                "id": f"https://login.salesforce.com/id/{ORG_ID}/005000000000001AAA",
                "token_type": "Bearer",
                "issued_at": "1780000000000",
            },
        )

    def _api(self, request: httpx.Request) -> httpx.Response:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer ") or auth[7:] not in self.tokens:
            raise Refused(errors(401, "INVALID_SESSION_ID", "Session expired or invalid"))
        if self.requests_left is not None:
            if self.requests_left <= 0:
                raise Refused(
                    errors(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
                )
            self.requests_left -= 1
        m = re.fullmatch(r"/services/data/v(\d+\.\d)(/.*)", request.url.path)
        if not m:
            raise Refused(errors(404, "NOT_FOUND", "The requested resource does not exist"))
        version, rest = m.groups()
        q = request.url.params.get("q", "")
        if rest == "/search/" and request.method == "GET":
            return self._search(q)
        if rest == "/query/" and request.method == "GET":
            return self._query(q, version)
        if rest.startswith("/query/") and request.method == "GET":
            return self._more(rest.rsplit("/", 1)[-1], version)
        if rest == "/sobjects/Task/describe/":
            return self._describe()
        if rest == "/limits/":
            left = self.requests_left if self.requests_left is not None else 99_000
            return httpx.Response(
                200, json={"DailyApiRequests": {"Max": 100_000, "Remaining": left}}
            )
        sm = re.fullmatch(r"/sobjects/(\w+)/?", rest)
        if sm and request.method == "POST":
            return self._create(sm.group(1), request)
        raise Refused(errors(404, "NOT_FOUND", "The requested resource does not exist"))

    # -- SOSL -----------------------------------------------------------------------------

    def _search(self, sosl: str) -> httpx.Response:
        m = re.fullmatch(r"FIND \{(.*?)(?<!\\)\} IN PHONE FIELDS RETURNING (.*)", sosl)
        if not m:
            raise Refused(errors(400, "MALFORMED_SEARCH", f"unexpected token in: {sosl[:60]}"))
        raw, returning = m.groups()
        for i, ch in enumerate(raw):
            if ch in RESERVED and (i == 0 or raw[i - 1] != "\\"):
                raise Refused(
                    errors(
                        400,
                        "MALFORMED_SEARCH",
                        f"line 1:{6 + i} no viable alternative at character '{ch}'",
                    )
                )
        terms = [digits(t) for t in raw.replace("\\", "").split(" OR ")]
        hits: list[dict[str, Any]] = []
        for sobject in ("Contact", "Lead"):
            spec = re.search(rf"\b{sobject}\(([^)]*)\)", returning)
            if not spec:
                continue
            fields = [
                f.strip()
                for f in spec.group(1).split(" WHERE ")[0].split(" ORDER BY ")[0].split(",")
            ]
            for rec in sorted(self.of(sobject), key=lambda r: r["_seq"]):
                if (
                    sobject == "Lead"
                    and "IsConverted = false" in spec.group(1)
                    and rec.get("IsConverted")
                ):
                    continue
                phones = [digits(rec.get(f)) for f in ("Phone", "MobilePhone") if rec.get(f)]
                if any(t and p.endswith(t) for t in terms for p in phones):
                    hits.append(
                        {"attributes": rec["attributes"], **{f: rec.get(f) for f in fields}}
                    )
        return httpx.Response(200, json={"searchRecords": hits})

    # -- SOQL (the adapter's queries only) ------------------------------------------------

    def _query(self, soql: str, version: str) -> httpx.Response:
        m = re.fullmatch(
            r"SELECT Id FROM Task WHERE CallObject = '((?:[^'\\]|\\.)*)'"
            r" AND TaskSubtype = '(\w+)' LIMIT 1",
            soql,
        )
        if m:
            uuid = m.group(1).replace("\\'", "'").replace("\\\\", "\\")
            rows = [
                {"attributes": r["attributes"], "Id": r["Id"]}
                for r in self.of("Task")
                if r.get("CallObject") == uuid and r.get("TaskSubtype") == m.group(2)
            ][:1]
            return self._page(rows, 0, version)
        if soql == "SELECT Id, Name, OrganizationType, IsSandbox FROM Organization":
            org = {
                "attributes": {"type": "Organization"},
                "Id": ORG_ID,
                "Name": "Acme",
                "OrganizationType": "Enterprise Edition",
                "IsSandbox": False,
            }
            return self._page([org], 0, version)
        if soql == (
            "SELECT Id, Name, Username, Email FROM User"
            " WHERE IsActive = true AND UserType = 'Standard' ORDER BY Name"
        ):
            rows = [
                {"attributes": {"type": "User"}, **u}
                for u in sorted(self.users, key=lambda u: u["Name"])
            ]
            self._last_rows = rows
            return self._page(rows, 0, version)
        raise Refused(errors(400, "MALFORMED_QUERY", f"unexpected token: {soql[:60]}"))

    def _page(self, rows: list[dict[str, Any]], start: int, version: str) -> httpx.Response:
        chunk = rows[start : start + self.page_size]
        done = start + self.page_size >= len(rows)
        body: dict[str, Any] = {"totalSize": len(rows), "done": done, "records": chunk}
        if not done:
            self._last_rows = rows
            body["nextRecordsUrl"] = (
                f"/services/data/v{version}/query/01gFAKE-{start + self.page_size}"
            )
        return httpx.Response(200, json=body)

    def _more(self, locator: str, version: str) -> httpx.Response:
        start = int(locator.rsplit("-", 1)[-1])
        return self._page(self._last_rows, start, version)

    def _describe(self) -> httpx.Response:
        fields = [
            {"name": f, "createable": f not in self.hidden_task_fields}
            for f in sorted(FIELDS["Task"])
            if f not in self.hidden_task_fields
        ]
        return httpx.Response(200, json={"name": "Task", "fields": fields})

    # -- create ---------------------------------------------------------------------------

    def _create(self, sobject: str, request: httpx.Request) -> httpx.Response:
        if sobject not in FIELDS:
            raise Refused(errors(404, "NOT_FOUND", "The requested resource does not exist"))
        if not request.headers.get("content-type", "").startswith("application/json"):
            raise Refused(errors(415, "UNSUPPORTED_MEDIA_TYPE", "Content-Type not supported"))
        try:
            body = httpx.Response(200, content=request.content).json()
        except ValueError:
            raise Refused(errors(400, "JSON_PARSER_ERROR", "Unexpected character")) from None
        for name in body:
            if name not in FIELDS[sobject] or (
                sobject == "Task" and name in self.hidden_task_fields
            ):
                raise Refused(
                    errors(
                        400,
                        "INVALID_FIELD",
                        f"No such column '{name}' on sobject of type {sobject}",
                    )
                )
        missing = [f for f in REQUIRED[sobject] if not body.get(f)]
        if missing:
            raise Refused(
                errors(
                    400,
                    "REQUIRED_FIELD_MISSING",
                    f"Required fields are missing: [{', '.join(missing)}]",
                    missing,
                )
            )
        for (obj, name), allowed in PICKLISTS.items():
            if obj == sobject and name in body and body[name] not in allowed:
                raise Refused(
                    errors(
                        400,
                        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                        f"{LABEL[name]}: bad value for restricted picklist field: {body[name]}",
                        [name],
                    )
                )
        self._check_values(sobject, body)
        rid = self.add(sobject, **body)
        return httpx.Response(201, json={"id": rid, "success": True, "errors": []})

    def _check_values(self, sobject: str, body: dict[str, Any]) -> None:
        owner = body.get("OwnerId")
        if owner is not None and not any(u["Id"] == owner for u in self.users):
            raise Refused(
                errors(
                    400, "INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["OwnerId"]
                )
            )
        who = body.get("WhoId")
        if who is not None and (who not in self.records or not who.startswith(("003", "00Q"))):
            raise Refused(
                errors(
                    400,
                    "FIELD_INTEGRITY_EXCEPTION",
                    f"Name ID: id value of incorrect type: {who}",
                    ["WhoId"],
                )
            )
        if "CallDurationInSeconds" in body and not (
            isinstance(body["CallDurationInSeconds"], int) and body["CallDurationInSeconds"] >= 0
        ):
            raise Refused(
                errors(
                    400,
                    "INVALID_TYPE_ON_FIELD_IN_RECORD",
                    "Call Duration: value not of required type",
                    ["CallDurationInSeconds"],
                )
            )
        for name, fmt in (
            ("ActivityDate", "%Y-%m-%d"),
            ("ReminderDateTime", "%Y-%m-%dT%H:%M:%S.%f%z"),
        ):
            if name in body:
                try:
                    datetime.strptime(str(body[name]).replace("Z", "+0000"), fmt)
                except ValueError:
                    raise Refused(
                        errors(
                            400,
                            "JSON_PARSER_ERROR",
                            f"Cannot deserialize instance of {name}",
                            [name],
                        )
                    ) from None
        for name in ("Subject", "CallObject", "CallDisposition"):
            if len(str(body.get(name) or "")) > 255:
                raise Refused(
                    errors(400, "STRING_TOO_LONG", f"{name}: data value too large", [name])
                )


# -- on loopback (the contract suite and the reliability harness) ---------------------------

LOOPBACK_SECRET = "sf-consumer-secret-reliability-5e4d3c2b1a"


class LoopbackSalesforce(FakeCRM):
    """A :class:`FakeSalesforce` org and its token endpoint behind aiohttp, its instance URL
    this server. A Task carries the call uuid in ``CallObject``."""

    @cached_property
    def org(self) -> FakeSalesforce:
        return FakeSalesforce(instance_url=self.base_url, client_secret=LOOPBACK_SECRET)

    def answer(self, seen: Recorded) -> Any:
        return relay(self.org(as_httpx(self.base_url, seen)))

    def error_json(self, status: int) -> Any:
        code, message = {
            401: ("INVALID_SESSION_ID", "Session expired or invalid"),
            403: ("INSUFFICIENT_ACCESS", "insufficient access rights on object id"),
            429: ("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."),
            500: ("UNKNOWN_EXCEPTION", "An unexpected error occurred."),
        }[status]
        return [{"message": message, "errorCode": code}]

    def call_key(self, seen: Recorded) -> str | None:
        if seen.method != "POST" or not seen.path.endswith("/sobjects/Task/"):
            return None
        task = self.json(seen)
        return key(task["CallObject"], CALL if task.get("TaskSubtype") == "Call" else TASK)


def reliability_table(base_url: str) -> dict[str, Any]:
    """``[adapters.salesforce]`` pointed at a :class:`LoopbackSalesforce`: the fake is both the
    token endpoint (``login_url``) and the instance it names."""
    return dict(
        CRM_COMMON,
        type="salesforce",
        login_url=base_url,
        client_id=CLIENT_ID,
        client_secret=LOOPBACK_SECRET,
    )
