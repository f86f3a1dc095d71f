"""``[adapters.amocrm]`` / ``[adapters.kommo]`` settings."""

from __future__ import annotations

from typing import Literal

import httpx
from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.adapter import AdapterSettings


class AmoCRMSettings(AdapterSettings):
    # The account's own domain: https://example.amocrm.ru, https://example.kommo.com.
    base_url: str = Field(..., description="the account's domain, e.g. https://example.amocrm.ru")
    # Either a long-lived token of a private integration…
    access_token: SecretStr | None = None
    # …or OAuth 2.0 (the refreshed pair is kept in the bridge's database).
    client_id: str | None = None
    client_secret: SecretStr | None = None
    redirect_uri: str | None = None
    refresh_token: SecretStr | None = None
    authorization_code: SecretStr | None = None
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

    @field_validator("users")
    @classmethod
    def _numeric_users(cls, v: dict[str, str]) -> dict[str, str]:
        bad = {ext: uid for ext, uid in v.items() if not str(uid).isdigit()}
        if bad:
            raise ValueError(
                f"amoCRM user ids are numbers (see `pbx-bridge check`); not numeric: {bad}"
            )
        return v

    @field_validator("default_user")
    @classmethod
    def _numeric_default(cls, v: str | None) -> str | None:
        if v is not None and not str(v).isdigit():
            raise ValueError("amoCRM user ids are numbers (see `pbx-bridge check`)")
        return v

    @model_validator(mode="after")
    def _one_auth(self) -> AmoCRMSettings:
        oauth = [self.client_id, self.client_secret, self.redirect_uri]
        seed = self.refresh_token or self.authorization_code
        if self.access_token is not None:
            if any(x is not None for x in [*oauth, seed]):
                raise ValueError("set either access_token or the OAuth keys, not both")
            return self
        if any(x is None for x in oauth) or seed is None:
            raise ValueError(
                "set access_token (a private integration's long-lived token), or client_id,"
                " client_secret, redirect_uri and refresh_token or authorization_code"
            )
        if self.refresh_token is not None and self.authorization_code is not None:
            raise ValueError("set refresh_token or authorization_code, not both")
        return self

    @property
    def oauth(self) -> bool:
        return self.access_token is None
