"""``[adapters.retailcrm]``: the account's address, its API key, and the store (site) code."""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from bridge.adapter import CredentialSettings

#: RetailCRM answers 503 above about 10 requests/s (its official PHP client's examples pause
#: 100 ms between requests): 8/s evenly spaced stays under it with room for a second client.
DEFAULT_RATE_LIMIT = 8.0
DEFAULT_INTEGRATION_CODE = "onlinepbx-bridge"
_API_SUFFIX = re.compile(r"/api(/v\d+)?/?$")


class RetailCRMSettings(CredentialSettings):
    CRM: ClassVar[str] = "RetailCRM"
    USER_IDS = "number"
    TOKEN_KEY: ClassVar[str] = "api_key"
    TOKEN_LABEL: ClassVar[str] = "an API key"

    base_url: str = Field(  # type: ignore[assignment]  # required here, optional elsewhere
        ..., description="the account's address, e.g. https://ACCOUNT.retailcrm.ru"
    )
    api_key: SecretStr = Field(..., description="Settings → Integration → API access keys")
    site: str | None = Field(
        None, description="the store's symbolic code; required when the key sees several stores"
    )
    integration_code: str = Field(
        DEFAULT_INTEGRATION_CODE,
        pattern=r"^[a-z0-9][a-z0-9_-]{1,62}$",
        description="code of the telephony integration module the bridge registers",
    )
    register_integration: bool = Field(
        True, description="register the telephony integration module (check / first call)"
    )
    rate_limit: float = Field(DEFAULT_RATE_LIMIT, ge=0)

    @field_validator("base_url")
    @classmethod
    def _account_url(cls, v: str) -> str:
        v = _API_SUFFIX.sub("", v.strip().rstrip("/"))
        if not re.match(r"^https?://[^/\s]+$", v):
            raise ValueError(
                "must be the account's address, e.g. https://ACCOUNT.retailcrm.ru"
                " (no path; /api/v5 is added by the bridge)"
            )
        return v
