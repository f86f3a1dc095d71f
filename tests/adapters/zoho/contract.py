"""Zoho CRM's official OpenAPI files (``zoho/crm-oas`` v8.0) as a contract for the adapter.

``record.json`` is read from ``<repo>/../shared/crm-specs/zoho`` (see shared/crm-specs/SOURCES.md;
the files are never edited). It points at its siblings by absolute GitHub URLs; those are mapped
here: ``common.json`` (and ``record.json`` itself) to the local copies, and the three siblings
that are not in the shared folder (``users.json``, ``tags.json``, ``modules.json``: the
``Created_By``/``Tag``/module stubs inside record answers) to permissive objects. Nothing is
fetched from the network: any other ``$ref`` fails the load.

Requests are validated strictly (method, path, query parameter types, no undeclared query
parameter, the JSON body against ``Body_Wrapper`` with undeclared properties forbidden, the
``Zoho-oauthtoken`` header). Answers: each record operation documents one ``200`` answer
whose schema covers both its success body and ``API_Exception``; Zoho sends those bodies
with 200/201/400 (a 204 search has no body, which the spec does not list), so an answer's
body is validated against that schema whatever its status. Answers of the platform
(401, 429, 5xx) are not record answers and are checked only for Zoho's error envelope (a
5xx page of a gateway in front of Zoho is not Zoho's and is left alone).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from werkzeug.datastructures import Headers

from tests.fakes.openapi import ContractViolation, checked, spec_request, spec_root

SPEC_DIR = spec_root() / "zoho"
UPSTREAM = "https://raw.githubusercontent.com/Zohocorp-Pvt-Ltd/crm-oas/refs/heads/main/v8.0/"
LOCAL = ("record.json", "common.json")
# Siblings not copied to shared/: what record.json takes from them, as permissive objects.
ABSENT = {
    "users.json": ("Minified_User",),
    "tags.json": ("Tag",),
    "modules.json": ("Minified_Module",),
}
SPEC_HOST = "https://zohoapis.com"  # the spec's server; the path is what is matched
RECORD_STATUSES = (200, 201, 204, 400)
SPECS_MISSING = (
    f"Zoho's OpenAPI files not found at {SPEC_DIR} (shared/crm-specs/zoho beside the repo)"
)


def required_in_ci() -> bool:
    """In CI the contract must run: a missing spec folder fails instead of skipping."""
    return bool(os.environ.get("CI"))


__all__ = ["ContractViolation", "ZohoContract"]


@dataclass
class _Response:
    status_code: int
    data: bytes
    content_type: str
    headers: Headers


class _LocalFiles:
    """The resolver handler for ``https`` refs: the shared copies, never the network."""

    def __init__(self, spec_dir: Path) -> None:
        self.spec_dir = spec_dir

    def __call__(self, uri: str) -> Any:
        name = uri.split("#", 1)[0].removeprefix(UPSTREAM)
        if name in LOCAL:
            return json.loads((self.spec_dir / name).read_text())
        if name in ABSENT:
            schemas = {s: {"type": "object", "additionalProperties": True} for s in ABSENT[name]}
            return {"components": {"schemas": schemas}}
        raise ContractViolation(f"unexpected $ref outside the Zoho specs: {uri}")


def _no_network(uri: str) -> Any:
    raise ContractViolation(f"unexpected $ref outside the Zoho specs: {uri}")


class ZohoContract:
    """Validates httpx requests and answers against ``record.json``."""

    def __init__(self, spec_dir: Path = SPEC_DIR) -> None:
        self.raw = json.loads((spec_dir / "record.json").read_text())
        local = _LocalFiles(spec_dir)
        handlers = {"https": local, "http": _no_network, "file": _no_network}
        spec = SchemaPath.from_dict(
            self.raw,
            base_uri=UPSTREAM + "record.json",
            handlers=handlers,
        )
        config = Config(spec_validator_cls=None, additional_properties_default_policy="forbid")
        self.api = OpenAPI(spec, config=config)
        self.validated: list[str] = []  # "<operationId> request" / "... answer", in order

    @staticmethod
    def applies_to(request: httpx.Request) -> bool:
        """Record operations (the only ones record.json describes) on a Zoho API domain."""
        path = request.url.path
        parts = path.strip("/").split("/")
        return (
            len(parts) >= 3
            and parts[:2] == ["crm", "v8"]
            and parts[2] not in ("settings", "users", "org")
            and "zohoapis" in request.url.host
        )

    def operation(self, request: httpx.Request) -> tuple[str, dict[str, Any]]:
        parts = request.url.path.strip("/").split("/")
        tail = "/".join(parts[3:])
        template = "/crm/v8/{module_api_name}" + (f"/{tail}" if tail else "")
        item = self.raw["paths"].get(template)
        op = (item or {}).get(request.method.lower())
        if op is None:
            raise ContractViolation(
                f"{request.method} {request.url.path}: no such operation in record.json"
            )
        return template, op

    def validate(self, request: httpx.Request) -> str:
        """Raise ContractViolation on any mismatch; the operationId when the request is valid."""
        _, op = self.operation(request)
        label = f"{request.method} {request.url.path} ({op['operationId']})"
        declared = set()
        for p in op.get("parameters", []):
            ref = p.get("$ref", "")
            name = ref.rsplit("/", 1)[-1] if ref else p.get("name")
            target = self.raw["components"]["parameters"].get(name, p)
            if target.get("in") == "query":
                declared.add(target["name"])
        extra = set(request.url.params.keys()) - declared
        if extra:
            raise ContractViolation(f"{label}: undeclared query parameter(s) {sorted(extra)}")
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Zoho-oauthtoken ") or len(auth) <= len("Zoho-oauthtoken "):
            raise ContractViolation(f"{label}: no 'Authorization: Zoho-oauthtoken …' header")
        wrapped = spec_request(request, SPEC_HOST)
        checked(label, lambda: self.api.validate_request(wrapped))
        self.validated.append(f"{op['operationId']} request")
        return str(op["operationId"])

    def validate_answer(self, request: httpx.Request, response: httpx.Response) -> str:
        """The answer's body against the operation's documented answer schema."""
        _, op = self.operation(request)
        label = f"{request.method} {request.url.path} → {response.status_code}"
        if response.status_code == 204:
            if response.content:
                raise ContractViolation(f"{label}: a 204 answer has a body")
            self.validated.append(f"{op['operationId']} answer")
            return str(op["operationId"])
        try:
            body = response.json()
        except ValueError:
            if response.status_code >= 500:
                return str(op["operationId"])  # a gateway's page in front of Zoho, not Zoho's
            raise ContractViolation(f"{label}: the answer is not JSON") from None
        if response.status_code not in RECORD_STATUSES:
            if not {"code", "message", "status"} <= set(body):
                raise ContractViolation(f"{label}: not Zoho's error envelope: {body}")
            return str(op["operationId"])
        bare = httpx.Request(request.method, request.url.copy_with(query=None))
        wrapped_request = spec_request(bare, SPEC_HOST)
        wrapped = _Response(
            status_code=200,
            data=response.content,
            content_type="application/json",
            headers=Headers({"content-type": "application/json"}),
        )
        checked(label, lambda: self.api.validate_response(wrapped_request, wrapped))
        self.validated.append(f"{op['operationId']} answer")
        return str(op["operationId"])
