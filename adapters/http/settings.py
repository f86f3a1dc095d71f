"""``[adapters.http]`` settings: where to POST, and the Standard Webhooks signing secret."""

from __future__ import annotations

import base64
import binascii

import httpx
from pydantic import SecretStr, field_validator

from bridge.adapter import AdapterSettings

SECRET_PATH = 16  # a path this long is a capability (Zapier/Make/n8n catch hooks): masked


class HttpSettings(AdapterSettings):
    # A secret: catch-hook URLs carry their key in the path, others a user:pass@ or a query.
    url: SecretStr
    secret: SecretStr
    rate_limit: float = 10.0

    def secrets(self) -> list[str]:
        """Also the URL's parts that hold its secret, as they show up in error reasons."""
        url = httpx.URL(self.url.get_secret_value())
        parts = [url.password, url.query.decode("ascii", "replace") or None]
        if len(url.path) >= SECRET_PATH:
            parts.append(url.path)
        return [*super().secrets(), *(p for p in parts if p)]

    @field_validator("secret")
    @classmethod
    def _standard_webhooks_secret(cls, v: SecretStr) -> SecretStr:
        # A ``whsec_`` secret is base64: a broken one would sign with garbage the receiver
        # can never verify, so every delivery would fail there instead of here.
        text = v.get_secret_value()
        if text.startswith("whsec_"):
            try:
                key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
            except (binascii.Error, ValueError):
                key = b""
            if not key:
                raise ValueError(
                    "a whsec_ secret is whsec_ followed by base64 (copy it whole from the"
                    " receiving side); anything else is used as a plain string without the prefix"
                )
        return v
