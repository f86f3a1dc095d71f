"""``[adapters.http]`` settings: where to POST, and the Standard Webhooks signing secret."""

from __future__ import annotations

import base64
import binascii

from pydantic import SecretStr, field_validator

from bridge.adapter import AdapterSettings


class HttpSettings(AdapterSettings):
    url: str
    secret: SecretStr
    rate_limit: float = 10.0

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
