"""Pipedrive's contract: every request the unit tests send, checked against its OpenAPI files.

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

from adapters.pipedrive.fake import READ_ONLY_MESSAGE
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
