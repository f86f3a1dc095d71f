"""``[adapters.bitrix24]`` settings: an inbound webhook or an OAuth app, plus behaviour keys."""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.adapter import CredentialSettings

OAUTH_TOKEN_URL = "https://oauth.bitrix.info/oauth/token/"

# https://PORTAL/rest/USER_ID/CODE/ (the form Bitrix24 prints for an inbound webhook)
_WEBHOOK = re.compile(r"^https://[^/\s]+/rest/(?P<user>\d+)/(?P<code>[^/\s]+)/?$")


class Bitrix24Settings(CredentialSettings):
    CRM: ClassVar[str] = "Bitrix24"
    USER_IDS = "number"
    TOKEN_KEY: ClassVar[str] = "webhook_url"
    TOKEN_LABEL: ClassVar[str] = "an inbound webhook"
    OAUTH_REQUIRED: ClassVar[tuple[str, ...]] = ("base_url", "client_id", "client_secret")

    # --- credentials: either an inbound webhook …
    webhook_url: SecretStr | None = Field(
        None, description="inbound webhook https://PORTAL/rest/USER_ID/CODE/ (holds a secret)"
    )
    # … or an OAuth application (CredentialSettings: client_id, client_secret, refresh_token;
    # base_url is the portal, https://PORTAL)
    oauth_url: str = Field(OAUTH_TOKEN_URL, description="Bitrix24 OAuth server token endpoint")

    # --- behaviour
    rate_limit: float = Field(2.0, ge=0, description="Bitrix24 drains 2 requests/s (5 Enterprise)")
    task_kind: Literal["todo", "task"] = "todo"
    call_log: Literal["auto", "telephony", "activity"] = Field(
        "auto",
        description="telephony.externalCall.* (falls back to a CRM call activity when the portal"
        " refuses it for this auth type), or always one of the two",
    )
    lead_creation: Literal["register", "lead_add"] = Field(
        "register",
        description="new numbers: let telephony.externalCall.register create the lead"
        " (CRM_CREATE=1), or create it with crm.lead.add",
    )
    lead_source: str = Field("CALL", description="CRM source id (SOURCE_ID / CRM_SOURCE)")
    ping_offsets: list[int] = Field([0, 15], description="to-do reminders, minutes before due")
    add_to_chat: bool = Field(False, description="post a call message in the employee's chat")
    attach_records: bool = True

    @field_validator("base_url")
    @classmethod
    def _portal(cls, v: str | None) -> str | None:
        return v.rstrip("/") if v else v

    @model_validator(mode="after")
    def _webhook_form(self) -> Bitrix24Settings:
        # Which keys are given is CredentialSettings' check; this one is the webhook's form.
        if self.webhook_url is not None:
            # Checked here, not in a field validator: an error of the model as a whole never
            # echoes the input value, and this one holds the webhook's secret code.
            url = self.webhook_url.get_secret_value().strip()
            if not _WEBHOOK.match(url):
                raise ValueError(
                    "webhook_url must look like https://PORTAL/rest/USER_ID/CODE/ (copy it"
                    " from Developer resources → Other → Inbound webhook)"
                )
            self.webhook_url = SecretStr(url if url.endswith("/") else url + "/")
            if self.base_url:
                raise ValueError("base_url is the portal of an OAuth app; a webhook_url has it")
        return self

    @property
    def webhook_parts(self) -> tuple[str, str] | None:
        """(user id, secret code) of the webhook, or None for an OAuth app."""
        if self.webhook_url is None:
            return None
        m = _WEBHOOK.match(self.webhook_url.get_secret_value())
        assert m is not None  # validated
        return m.group("user"), m.group("code")

    @property
    def auth_kind(self) -> str:
        return "webhook" if self.webhook_url is not None else "oauth"

    def portal(self) -> str:
        """The portal's host, safe to print."""
        if self.webhook_url is not None:
            return self.webhook_url.get_secret_value().split("/")[2]
        return (self.base_url or "").split("//", 1)[-1]

    def secrets(self) -> list[str]:
        # The webhook's code alone must be masked too: it appears in request paths.
        out = super().secrets()
        parts = self.webhook_parts
        if parts:
            out.append(parts[1])
        return out
