"""``[adapters.salesforce]``: the org's login (token) URL and the connected app's client
credentials (OAuth 2.0 client credentials flow)."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator

from bridge.adapter import CredentialSettings

DEFAULT_LOGIN_URL = "https://login.salesforce.com"
DEFAULT_API_VERSION = "62.0"  # Winter '25; every object and field used exists since v41
#: Salesforce counts API requests per 24 h (Enterprise: 100 000 + 1 000 per licence) and
#: allows 25 long-running requests at once; 5/s evenly spaced is far inside both.
DEFAULT_RATE_LIMIT = 5.0


class SalesforceSettings(CredentialSettings):
    CRM: ClassVar[str] = "Salesforce"
    OAUTH_GRANT: ClassVar[str] = "client_credentials"

    login_url: str = Field(
        DEFAULT_LOGIN_URL,
        description="where tokens are requested; the client credentials flow needs the org's"
        " My Domain URL, e.g. https://ACME.my.salesforce.com",
    )
    client_id: str = Field(..., min_length=1, description="the connected app's consumer key")
    client_secret: SecretStr = Field(..., description="the connected app's consumer secret")
    api_version: str = Field(DEFAULT_API_VERSION, pattern=r"^\d{2,3}\.0$")
    create_as: Literal["Lead", "Contact"] = Field(
        "Lead", description="what an unknown caller becomes (create_contacts permitting)"
    )
    lead_company: str = Field(
        "[not provided]", min_length=1, description="Lead.Company is required; the placeholder"
    )
    lead_source: str | None = Field("Phone Inquiry", description="Lead.LeadSource, or none")
    rate_limit: float = Field(DEFAULT_RATE_LIMIT, ge=0)

    @field_validator("login_url")
    @classmethod
    def _login_url(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        if not re.match(r"^https?://[^/\s]+$", v):
            raise ValueError(
                "must be a bare https URL: https://login.salesforce.com, or the org's My Domain"
                " (https://ACME.my.salesforce.com), without a path"
            )
        return v
