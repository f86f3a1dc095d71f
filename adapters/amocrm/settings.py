"""``[adapters.amocrm]`` / ``[adapters.kommo]`` settings."""

from __future__ import annotations

from typing import ClassVar, Literal

import httpx
from pydantic import Field, SecretStr, field_validator

from bridge.adapter import CredentialSettings


class AmoCRMSettings(CredentialSettings):
    CRM: ClassVar[str] = "amoCRM"
    USER_IDS = "number"
    TOKEN_KEY: ClassVar[str] = "access_token"
    TOKEN_LABEL: ClassVar[str] = "a private integration's long-lived token"
    OAUTH_REQUIRED: ClassVar[tuple[str, ...]] = ("client_id", "client_secret", "redirect_uri")

    # The account's own domain: https://example.amocrm.ru, https://example.kommo.com.
    base_url: str = Field(..., description="the account's domain, e.g. https://example.amocrm.ru")
    # Either a long-lived token of a private integration, or OAuth 2.0 (CredentialSettings:
    # client_id, client_secret, redirect_uri, refresh_token or authorization_code; the
    # refreshed pair is kept in the bridge's database).
    access_token: SecretStr | None = None
    # amoCRM allows 7 requests/s per account; stay under it.
    rate_limit: float = Field(6.0, ge=0)
    unknown_caller: Literal["contact", "unsorted", "lead"] = "contact"
    pipeline_id: int | None = None
    source: str = Field("onlinepbx", min_length=1, description="`source` of logged calls")

    @field_validator("base_url")
    @classmethod
    def _domain(cls, v: str) -> str:
        v = v.strip().rstrip("/")
        url = httpx.URL(v)
        if url.scheme not in ("https", "http") or not url.host:
            raise ValueError("must be the account's address, e.g. https://example.amocrm.ru")
        if url.path not in ("", "/"):
            raise ValueError("give only the account's domain, without a path such as /api/v4")
        return v

    @property
    def oauth(self) -> bool:
        return self.access_token is None
