"""openapi-core glue shared by the vendors' contract checks (Pipedrive's, Zoho's).

The specs live in ``shared/crm-specs`` beside the repository (see its SOURCES.md);
``PBX_BRIDGE_CRM_SPECS`` points elsewhere. From a worktree nested below the checkout (``wt/x``)
the first ``shared/crm-specs`` found above the repository is used.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

REPO = Path(__file__).resolve().parents[2]


def spec_root() -> Path:
    if os.environ.get("PBX_BRIDGE_CRM_SPECS"):
        return Path(os.environ["PBX_BRIDGE_CRM_SPECS"])
    for folder in REPO.parents:
        if (folder / "shared" / "crm-specs").is_dir():
            return folder / "shared" / "crm-specs"
    return REPO.parent / "shared" / "crm-specs"


class ContractViolation(AssertionError):
    pass


@dataclass
class SpecRequest:
    """The request protocol openapi-core validates (host, path, method, parameters, body)."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    body: bytes | None
    content_type: str

    @property
    def full_url_pattern(self) -> str:
        return self.host_url + self.path


def spec_request(request: httpx.Request, host_url: str) -> SpecRequest:
    """An httpx request as openapi-core reads it, matched against the spec's ``host_url``."""
    return SpecRequest(
        host_url=host_url,
        path=request.url.path,
        method=request.method.lower(),
        parameters=RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
        ),
        body=request.content or None,
        content_type=request.headers.get("content-type", "application/json"),
    )


def checked(label: str, run: Callable[[], Any]) -> None:
    """Run one openapi-core validation; its failure as a ContractViolation that lists every
    schema error (openapi-core chains them as causes)."""
    try:
        with warnings.catch_warnings():
            # openapi-core has no provider for the oauth2 scheme; callers check the header.
            warnings.filterwarnings("ignore", "Unsupported scheme type", UserWarning)
            run()
    except Exception as exc:
        details = [str(exc)]
        cause = exc.__cause__
        while cause is not None:
            details.append(str(cause))
            details.extend(str(e.message) for e in getattr(cause, "schema_errors", ()))
            cause = cause.__cause__
        raise ContractViolation(f"{label}: " + " | ".join(details)) from exc
