"""Pipedrive test helpers: its real answers, and a contract check against its OpenAPI files.

The specs are the vendor's official ``v1.yaml`` / ``v2.yaml`` (see shared/crm-specs/SOURCES.md),
read from ``<repo>/../shared/crm-specs/pipedrive``. Loading them takes a few seconds, so the
test module loads them once (module-scoped fixture) and validates every captured request.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_core import Config, OpenAPI

from tests.fakes.openapi import ContractViolation, checked, spec_request, spec_root

# ``PBX_BRIDGE_CRM_SPECS`` points elsewhere (a worktree, a CI checkout of the specs).
SPEC_ROOT = spec_root()
SPEC_DIR = SPEC_ROOT / "pipedrive"
SPEC_HOST = "https://api.pipedrive.com"
# Each spec's server path, and which file holds it.
PREFIXES = {"/api/v2": "v2.yaml", "/v1": "v1.yaml"}
NOT_IN_SPECS = {"oauth.pipedrive.com"}  # the OAuth token endpoint has no OpenAPI file
# What the live API refuses although the OpenAPI files declare it: API v2 treats an
# activity's person_id as read-only (the v2 migration guide; the live answer is
# 400 "'person_id' is a read-only field. Add a primary participant to set 'person_id'
# instead."), so the contract refuses it as Pipedrive does.
READ_ONLY = {
    ("POST", "/api/v2/activities"): ("person_id",),
    ("PATCH", "/api/v2/activities"): ("person_id",),
}
READ_ONLY_MESSAGE = (
    "'{field}' is a read-only field. Add a primary participant to set '{field}' instead."
)

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


__all__ = ["ContractViolation", "PipedriveContract"]


class PipedriveContract:
    """Validates httpx requests against Pipedrive's OpenAPI files, strictly.

    openapi-core checks method, path, query parameter types, the body against its schema
    (formats included, e.g. ``date-time``) with undeclared body properties forbidden. On
    top of that: no undeclared query parameter, and an API token or OAuth bearer present.
    """

    def __init__(self, spec_dir: Path = SPEC_DIR) -> None:
        config = Config(spec_validator_cls=None, additional_properties_default_policy="forbid")
        self.raw: dict[str, dict[str, Any]] = {}
        self.apis: dict[str, OpenAPI] = {}
        for prefix, name in PREFIXES.items():
            with (spec_dir / name).open("rb") as fh:
                self.raw[prefix] = yaml.load(fh, Loader=_Loader)
            self.apis[prefix] = OpenAPI.from_dict(self.raw[prefix], config=config)
        self.validated: list[str] = []  # operationIds, in the order seen

    @staticmethod
    def applies_to(request: httpx.Request) -> bool:
        host = request.url.host
        return host.endswith("pipedrive.com") and host not in NOT_IN_SPECS

    def operation(self, request: httpx.Request) -> tuple[str, dict[str, Any]]:
        path = request.url.path
        for prefix in PREFIXES:
            if path.startswith(prefix + "/"):
                sub = path[len(prefix) :]
                paths = self.raw[prefix]["paths"]
                item = paths.get(sub) or next(
                    (
                        paths[template]
                        for template in paths
                        if "{" in template
                        and re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), sub)
                    ),
                    None,
                )
                op = (item or {}).get(request.method.lower())
                if op is None:
                    raise ContractViolation(
                        f"{request.method} {path}: no such operation in {prefix}"
                    )
                return prefix, op
        raise ContractViolation(f"{request.method} {path}: outside both Pipedrive APIs")

    def validate(self, request: httpx.Request) -> str:
        """Raise ContractViolation on any mismatch; the operationId when the request is valid."""
        prefix, op = self.operation(request)
        label = f"{request.method} {request.url.path} ({op['operationId']})"
        declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "query"}
        extra = set(request.url.params.keys()) - declared
        if extra:
            raise ContractViolation(f"{label}: undeclared query parameter(s) {sorted(extra)}")
        if request.content and request.headers.get("content-type", "").startswith(
            "application/json"
        ):
            sent = json.loads(request.content)
            for field in READ_ONLY.get(
                (request.method, request.url.path.rstrip("/0123456789").rstrip("/")), ()
            ):
                if isinstance(sent, dict) and field in sent:
                    raise ContractViolation(f"{label}: " + READ_ONLY_MESSAGE.format(field=field))
        token = request.headers.get("x-api-token")
        bearer = request.headers.get("authorization", "").startswith("Bearer ")
        if not token and not bearer:
            raise ContractViolation(f"{label}: neither x-api-token nor a bearer token sent")
        wrapped = spec_request(request, SPEC_HOST)
        checked(label, lambda: self.apis[prefix].validate_request(wrapped))
        self.validated.append(op["operationId"])
        return str(op["operationId"])


# -- Pipedrive's answers, as its API writes them --------------------------------------------


def ok(data: Any, **extra: Any) -> httpx.Response:
    return httpx.Response(200, json={"success": True, "data": data, **extra})


def error(status: int, message: str, **extra: Any) -> httpx.Response:
    body = {
        "success": False,
        "error": message,
        "error_info": "Please check developers.pipedrive.com for more information about"
        " Pipedrive API.",
        "data": None,
        "additional_data": None,
    }
    return httpx.Response(status, json={**body, **extra})


def search_item(person_id: int, name: str, phones: list[str], owner: int) -> dict[str, Any]:
    return {
        "result_score": 0.5092,
        "item": {
            "id": person_id,
            "type": "person",
            "name": name,
            "phones": phones,
            "emails": [],
            "visible_to": 3,
            "owner": {"id": owner},
            "organization": None,
            "custom_fields": [],
            "notes": [],
        },
    }


def search_answer(*items: dict[str, Any]) -> httpx.Response:
    return ok({"items": list(items)}, additional_data={"next_cursor": None})


def person(person_id: int, name: str, phone: str, owner: int) -> httpx.Response:
    return ok(
        {
            "id": person_id,
            "name": name,
            "owner_id": owner,
            "org_id": None,
            "add_time": "2026-05-28T20:26:41Z",
            "update_time": None,
            "emails": [],
            "phones": [{"value": phone, "primary": True, "label": "work"}],
            "is_deleted": False,
            "visible_to": 3,
            "label_ids": [],
            "picture_id": None,
        }
    )


def activity(activity_id: int, **fields: Any) -> httpx.Response:
    return ok(
        {
            "id": activity_id,
            "creator_user_id": 1,
            "is_deleted": False,
            "add_time": "2026-05-28T20:26:41Z",
            "update_time": "2026-05-28T20:26:41Z",
            **fields,
        }
    )


def call_log(log_id: str, **fields: Any) -> httpx.Response:
    return ok({"id": log_id, "activity_id": 7007, "has_recording": False, **fields})
