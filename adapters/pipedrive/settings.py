"""``[adapters.pipedrive]`` settings: an API token, or an OAuth app (the SDK's one shape)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import SecretStr

from bridge.adapter import CredentialSettings


class PipedriveSettings(CredentialSettings):
    CRM: ClassVar[str] = "Pipedrive"
    USER_IDS = "number"
    TOKEN_KEY: ClassVar[str] = "api_token"
    TOKEN_LABEL: ClassVar[str] = "a personal API token"

    api_token: SecretStr | None = None
    activity_type: str = "call"  # key_string of the activity type for missed-call follow-ups
