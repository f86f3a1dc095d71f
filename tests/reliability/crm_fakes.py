"""The loopback fake still waiting to move into its adapter folder (Bitrix24), and the names
of ``bridge.fakecrm`` it uses. Every other adapter's fake is its ``adapters/<crm>/fake.py``,
named by its manifest; this file goes once Bitrix24's has moved.

Bitrix24's answers are built by the respx helpers in ``tests/fakes``; it carries the call uuid
in a registration's ``EXTERNAL_CALL_ID``; its to-dos have no field for it (``TEMPLATES``).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from bridge import fakecrm as fakes
from bridge.fakecrm import (
    CALL,
    CRM_COMMON,
    DOMAIN,
    TASK,
    TEMPLATES,
    FakeCRM,
    Recorded,
    as_httpx,
    key,
    marked,
    relay,
)
from tests.fakes import bitrix24 as b24

__all__ = ["DOMAIN", "TEMPLATES", "key", "marked"]

B24_SECRET = "b24-client-secret-5a4b3c2d1e0f"
B24_REFRESH = "b24-refresh-token-0f9e8d7c6b5a"
B24_ACCESS = "b24-access-token-1a2b3c4d5e6f"  # what the fake's OAuth server issues

# The shared base moved to bridge.fakecrm (adapters' own fakes import it from there).
_Fake = FakeCRM
_as_httpx = as_httpx
_CRM_COMMON = CRM_COMMON


class FakeBitrix24(_Fake):
    """A Bitrix24 portal reached by an OAuth app (``/rest/<method>``) and its OAuth server
    (``/oauth/token/``). A repeated ``register`` of an unfinished call returns the same
    ``CALL_ID``, as Bitrix24 documents for 30 minutes."""

    causes: ClassVar[dict[str, str]] = {
        fakes.RATE_LIMIT_SECONDS: "OPERATION_TIME_LIMIT",
        fakes.RATE_LIMIT_DATE: "OPERATION_TIME_LIMIT",
        fakes.UNAUTHORIZED: "NO_AUTH_FOUND",
        fakes.FORBIDDEN: "ACCESS_DENIED",
    }

    @cached_property
    def open_calls(self) -> dict[str, dict[str, Any]]:
        return {}  # EXTERNAL_CALL_ID → its registration, until finished

    def answer(self, seen: Recorded) -> Any:
        if seen.path.startswith("/oauth/token"):
            return {
                "access_token": B24_ACCESS,
                "refresh_token": B24_REFRESH,
                "expires_in": 3600,
                "member_id": "a223c6b3710f85df22e9377d6c4f7553",
                "client_endpoint": f"{self.base_url}/rest/",
            }
        method = seen.path.removeprefix("/rest/")
        return relay(b24.ok(self._result(method, self.json(seen) or {})))

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "telephony.externalCall.searchCrmEntities":
            found = self.records.find(params["PHONE_NUMBER"])
            return [] if found is None else [b24.crm_entity("LEAD", found)]
        if method == "crm.duplicate.findbycomm":
            return []  # what Bitrix24 answers when nothing matches
        if method == "crm.lead.add":
            return self.records.new(params["fields"]["PHONE"][0]["VALUE"])
        if method == "telephony.externalCall.register":
            return self._register(params)
        if method == "telephony.externalCall.finish":
            for ext, reg in list(self.open_calls.items()):
                if reg["CALL_ID"] == params["CALL_ID"]:
                    del self.open_calls[ext]
            return {**b24.FINISHED, "CALL_ID": params["CALL_ID"], "ID": self.records.new()}
        if method == "crm.activity.todo.add":
            return {"id": self.records.new()}
        if method == "tasks.task.add":
            return {"task": {"id": self.records.new()}}
        if method == "profile":
            return {"ID": "1", "ADMIN": True, "NAME": "Admin", "LAST_NAME": ""}
        if method == "user.get":
            return [{"ID": "1", "NAME": "Admin", "LAST_NAME": "", "ACTIVE": True}]
        return {}

    def _register(self, params: dict[str, Any]) -> dict[str, Any]:
        ext = str(params["EXTERNAL_CALL_ID"])
        if ext not in self.open_calls:
            lead = self.records.new(params["PHONE_NUMBER"]) if params.get("CRM_CREATE") else None
            self.open_calls[ext] = {
                **b24.REGISTERED,
                "CALL_ID": f"externalCall.{self.records.new()}.{ext}",
                "CRM_CREATED_LEAD": lead,
                "CRM_ENTITY_TYPE": "LEAD" if lead else params.get("CRM_ENTITY_TYPE"),
                "CRM_ENTITY_ID": lead or params.get("CRM_ENTITY_ID"),
            }
        return self.open_calls[ext]

    def error_json(self, status: int) -> Any:
        code, text = {
            401: ("NO_AUTH_FOUND", "Wrong authorization data"),
            403: ("ACCESS_DENIED", "REST API is available only on commercial plans"),
            429: ("OPERATION_TIME_LIMIT", "Method is blocked due to operation time limit."),
            500: ("INTERNAL_SERVER_ERROR", "Internal server error"),
        }[status]
        return b24.error(status, code, text).json()

    def call_key(self, seen: Recorded) -> str | None:
        method = seen.path.removeprefix("/rest/")
        params = self.json(seen) or {}
        if method == "telephony.externalCall.register":
            return key(params["EXTERNAL_CALL_ID"], CALL)
        if method == "crm.activity.add":
            return key(params["fields"]["ORIGIN_ID"], CALL)
        if method == "crm.activity.todo.add":
            return marked(params.get("description"), TASK)
        if method == "tasks.task.add":
            return marked(params["fields"].get("DESCRIPTION"), TASK)
        return None


# --- [adapters.<name>] tables pointed at the fakes (named by each manifest's fake_table) ---

# Shared by the CRM tables: no client-side rate limit and 4 requests at a time (the fakes are
# on loopback; the big crash run drains 4000 calls through each), and unknown numbers always
# get a record, so searching, creating and then finding are all exercised.
_CRM_COMMON = {"rate_limit": 0, "concurrency": 4, "create_contacts": "always"}


def bitrix24_table(base_url: str) -> dict[str, Any]:
    # An OAuth app: an inbound webhook_url must be https, and the OAuth refresh is covered too.
    return {
        "type": "bitrix24",
        "base_url": base_url,
        "oauth_url": f"{base_url}/oauth/token/",
        "client_id": "local.reliability.1",
        "client_secret": B24_SECRET,
        "refresh_token": B24_REFRESH,
        "default_user": "1",
        **_CRM_COMMON,
    }
