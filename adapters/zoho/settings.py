"""``[adapters.zoho]``: a Zoho CRM org reached by a self client's (or server app's) refresh token.

Zoho runs separate data centres; an org, its OAuth client and its refresh token live in one of
them, and the refresh token only works at that data centre's accounts server
(``accounts_url``). The token answer's ``api_domain`` says where the org's API is.

Limits (Zoho CRM "API limits"): API credits per rolling 24 hours by edition, 1 credit per
record request the adapter makes, plus a concurrency limit per user and app (Free 5 …
Ultimate 25). ``rate_limit``/``rate_window`` default to the edition's credits per 24 h as a
24-hour sliding window, so a backlog never spends more than the org has in a day.
"""

from __future__ import annotations

from typing import ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from bridge.adapter import CredentialSettings

DEFAULT_ACCOUNTS_URL = "https://accounts.zoho.com"
TOKEN_PATH = "/oauth/v2/token"
DAY = 86400.0

# Zoho's data centres: accounts server → the API domain of orgs hosted there (the official
# SDK's DataCenter classes; the token answer's api_domain is preferred when present).
DATA_CENTRES = {
    "accounts.zoho.com": ("US", "https://www.zohoapis.com"),
    "accounts.zoho.eu": ("EU", "https://www.zohoapis.eu"),
    "accounts.zoho.in": ("IN", "https://www.zohoapis.in"),
    "accounts.zoho.com.au": ("AU", "https://www.zohoapis.com.au"),
    "accounts.zoho.jp": ("JP", "https://www.zohoapis.jp"),
    "accounts.zohocloud.ca": ("CA", "https://www.zohoapis.ca"),
    "accounts.zoho.sa": ("SA", "https://www.zohoapis.sa"),
    "accounts.zoho.com.cn": ("CN", "https://www.zohoapis.com.cn"),
}

Edition = Literal["free", "standard", "professional", "enterprise", "ultimate"]
# (base credits, credits per user licence, maximum) per rolling 24 h; None = no maximum.
CREDITS: dict[str, tuple[int, int, int | None]] = {
    "free": (5000, 0, 5000),
    "standard": (50_000, 250, 100_000),
    "professional": (50_000, 500, 3_000_000),
    "enterprise": (50_000, 1000, 5_000_000),
    "ultimate": (50_000, 2000, None),
}
# Concurrent API calls allowed per user and app, by edition.
CONCURRENCY = {"free": 5, "standard": 10, "professional": 15, "enterprise": 20, "ultimate": 25}


def daily_credits(edition: str, user_licenses: int) -> int:
    base, per_user, cap = CREDITS[edition]
    total = base + per_user * user_licenses
    return total if cap is None else min(total, cap)


def data_centre(accounts_url: str) -> tuple[str, str] | None:
    """(label, API domain) of a known Zoho accounts server, None for any other host."""
    return DATA_CENTRES.get(urlsplit(accounts_url).hostname or "")


class ZohoSettings(CredentialSettings):
    """The SDK's credentials shape: Zoho has no long-lived token, so it is the OAuth app
    (``client_id``, ``client_secret``, ``refresh_token``); a one-hour ``access_token`` from
    the API console is accepted for a quick try (it is not refreshed)."""

    CRM: ClassVar[str] = "Zoho CRM"
    # Zoho's refresh token is long-lived, not rotated: `check` may refresh it anywhere.
    REFRESH_TOKEN_ROTATES: ClassVar[bool] = False
    USER_IDS = "number"  # Zoho user ids are long numbers ("4150868000000225013")
    TOKEN_KEY: ClassVar[str] = "access_token"
    TOKEN_LABEL: ClassVar[str] = "a one-hour access token, for a quick try"

    access_token: SecretStr | None = None
    accounts_url: str = Field(
        DEFAULT_ACCOUNTS_URL,
        description="the org's data centre: https://accounts.zoho.com, .eu, .in, .com.au, .jp…",
    )
    api_domain: str | None = Field(
        None, description="normally taken from the token answer; set only to pin it"
    )
    edition: Edition = Field("standard", description="sets the daily API credit budget")
    user_licenses: int = Field(1, ge=0, description="user licences of the org (credits)")
    api_credits: int | None = Field(
        None, ge=1, description="credits per 24 h when known (add-ons included): overrides"
    )
    new_record_module: Literal["Leads", "Contacts"] = "Leads"
    search_leads: bool = True
    lead_company: str | None = Field(
        None, description="Company of created leads (mandatory in Zoho); default: the name"
    )
    call_id_field: str | None = Field(
        None,
        description="API name of a custom unique text field in Calls and Tasks holding the"
        " PBX call id: writes become upserts (an idempotency key)",
    )
    call_results: dict[str, str] = Field(
        {}, description="call outcome → Call_Result picklist value (answered, busy, …)"
    )
    task_status: str = "Not Started"
    task_priority: str = "High"
    task_reminder: bool = True

    @field_validator("accounts_url", "api_domain")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        parts = urlsplit(v)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise ValueError("must be a URL such as https://accounts.zoho.eu")
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost"):
            raise ValueError("must be https")
        return f"{parts.scheme}://{parts.netloc}"

    @model_validator(mode="after")
    def _credit_budget(self) -> ZohoSettings:
        # Explicit rate settings win; otherwise spend at most a day's credits in any 24 h.
        if "rate_limit" not in self.model_fields_set:
            credits = self.api_credits or daily_credits(self.edition, self.user_licenses)
            self.rate_limit = credits / DAY
            if "rate_window" not in self.model_fields_set:
                self.rate_window = DAY
                # The window limiter paces evenly by default (a card never waits more than a
                # slot); a day's credits are a budget, not a pace (17 s apart on Free): let
                # them go at once, as long as the day has them.
                if "rate_burst" not in self.model_fields_set:
                    self.rate_burst = float(credits)
        return self

    @property
    def daily_credits(self) -> int:
        return self.api_credits or daily_credits(self.edition, self.user_licenses)

    @property
    def token_url(self) -> str:
        """The refresh endpoint at the org's data centre."""
        return f"{self.accounts_url}{TOKEN_PATH}"

    @property
    def default_api_domain(self) -> str:
        known = data_centre(self.accounts_url)
        return self.api_domain or (known[1] if known else "https://www.zohoapis.com")
