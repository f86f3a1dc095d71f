"""Signed, long-lived bridge links to call recordings.

``{public_url}/recordings/{uuid}.mp3?exp=<unix>&sig=<hmac>``: the signature covers the uuid and the
expiry, so a link cannot be pointed at another call or kept alive longer. Opening it makes the
bridge ask onlinePBX for a fresh (30-minute) link at that moment.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from urllib.parse import quote, urlencode

from bridge.call import Call
from bridge.settings import Settings
from bridge.store import Storage

ROUTE = "/recordings/{uuid}"
# Links end in ".mp3": CRMs that play a recording (HubSpot) take only https links to a
# playable file name. onlinePBX records MP3. Links without it (issued before) still work.
AUDIO_SUFFIX = ".mp3"
SIGNING_KEY_META = "recording_signing_key"


async def signing_key(storage: Storage, settings: Settings) -> str:
    """The configured key, else one generated on first start and kept in ``meta``."""
    if settings.server.signing_key is not None:
        return settings.server.signing_key.get_secret_value()
    return await storage.put_meta_if_absent(SIGNING_KEY_META, secrets.token_urlsafe(32))


def _sig(key: str, uuid: str, exp: int) -> str:
    mac = hmac.new(key.encode(), f"{uuid}\n{exp}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class RecordingLinks:
    key: str
    public_url: str
    lifetime_seconds: float

    def url(self, uuid: str, now: float) -> str:
        exp = int(now + self.lifetime_seconds)
        query = urlencode({"exp": exp, "sig": _sig(self.key, uuid, exp)})
        path = ROUTE.format(uuid=quote(uuid, safe="") + AUDIO_SUFFIX)
        return f"{self.public_url.rstrip('/')}{path}?{query}"

    def valid(self, uuid: str, exp: str, sig: str, now: float) -> bool:
        """True for an untampered, unexpired link. Constant-time in the signature."""
        if not exp.isascii() or not exp.isdigit() or len(exp) > 12:
            return False
        expected = _sig(self.key, uuid, int(exp))
        good = hmac.compare_digest(expected.encode(), sig.encode("utf-8", "surrogatepass"))
        return good and int(exp) > now

    def apply(self, call: Call, now: float) -> Call:
        """The call with its recording behind a bridge link (unchanged if it has none).

        A webhook says there is a recording by carrying ``download_url``; a call recovered
        from the history carries no link, so an answered one is assumed to have a recording
        (the link then answers 404 with a clear message if it has none).
        """
        has_recording = call.recording_url or (call.recovered and call.answered)
        if not has_recording:
            return call
        return replace(call, recording_url=self.url(call.uuid, now))
