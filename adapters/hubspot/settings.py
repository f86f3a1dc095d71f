"""``[adapters.hubspot]`` settings: a private-app token, or an OAuth app (the SDK's one shape)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from bridge.adapter import CredentialSettings


class HubSpotSettings(CredentialSettings):
    CRM: ClassVar[str] = "HubSpot"
    USER_IDS = "number"  # owner ids (`pbx-bridge check` lists them)
    TOKEN_KEY: ClassVar[str] = "access_token"
    TOKEN_LABEL: ClassVar[str] = "a private app's access token"

    access_token: SecretStr | None = Field(None, description="private app access token")
    # 100 requests / 10 s is the default app limit (190 for private apps on Pro/Enterprise):
    # 9/s evenly spaced never exceeds it. Search has its own limit of 4/s per token.
    rate_limit: float = 9.0
    search_rate_limit: float = Field(3.0, ge=0)
