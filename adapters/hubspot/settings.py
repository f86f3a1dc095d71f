"""``[adapters.hubspot]`` settings: a private-app token, or an OAuth app (the SDK's one shape)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, SecretStr

from bridge.adapter import CredentialSettings


class HubSpotSettings(CredentialSettings):
    CRM: ClassVar[str] = "HubSpot"
    USER_IDS = "number"  # owner ids (`pbx-bridge check` lists them)
    TOKEN_KEY: ClassVar[str] = "access_token"
    TOKEN_LABEL: ClassVar[str] = "a private app's access token"

    access_token: SecretStr | None = Field(None, description="private app access token")
    # 100 requests / 10 s is the default app limit (190 for private apps on Pro/Enterprise):
    # 9/s evenly spaced never exceeds it. CRM search has its own limit of 5 requests a
    # second per account (every app of the portal counts): 4/s evenly spaced keeps one
    # second's window under it with room for network jitter.
    rate_limit: float = 9.0
    search_rate_limit: float = Field(4.0, ge=0)
    # Call outcome (hs_call_disposition): HubSpot's default outcome GUIDs, or a portal's
    # own ones by outcome name (`pbx-bridge check` lists the portal's outcomes).
    dispositions: dict[Literal["connected", "busy", "no_answer", "wrong_number"], str] = Field(
        default_factory=dict
    )
    # Associate calls and tasks with the contact's primary company and its open deal too.
    link_deals: bool = True
