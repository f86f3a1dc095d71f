"""``[adapters.pipedrive]`` settings: an API token, or an OAuth app (the SDK's one shape)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr

from bridge.adapter import CredentialSettings


class PipedriveSettings(CredentialSettings):
    CRM: ClassVar[str] = "Pipedrive"
    USER_IDS = "number"
    TOKEN_KEY: ClassVar[str] = "api_token"
    TOKEN_LABEL: ClassVar[str] = "a personal API token"

    api_token: SecretStr | None = None
    activity_type: str = "call"  # key_string of the activity type for missed-call follow-ups
    # The Search API allows 10 requests per 2 seconds on every plan: evenly spaced, 5/s.
    search_rate_limit: float = Field(5.0, ge=0)
    # Attach call logs and activities to the person's open deal (one more request per
    # lookup, 10 tokens) and organisation.
    link_deals: bool = True
    # Upload the recording to the call log, so it plays inside Pipedrive.
    upload_recordings: bool = True
