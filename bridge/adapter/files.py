"""Fetching a call's recording for CRMs that want the file itself, not a link.

Most CRMs take the recording's URL (the bridge's signed link when the onlinePBX API is
configured). A few only play what was uploaded to them (Pipedrive's call-log recordings):
for those the adapter fetches the audio here, with a size cap and a total deadline, and
uploads the bytes.
"""

from __future__ import annotations

import asyncio
import posixpath
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from bridge.adapter.errors import Permanent, RetryLater
from bridge.adapter.http import AnswerTooLarge, read_capped

#: A 60-minute call in 128 kbit/s MP3 is about 58 MB; larger files stay a link.
MAX_RECORDING_BYTES = 64 * 1024 * 1024
RECORDING_TIMEOUT = 120.0
AUDIO_TYPES = {".mp3": "audio/mpeg", ".wav": "audio/wav", ".ogg": "audio/ogg"}


@dataclass(frozen=True, slots=True)
class Recording:
    filename: str
    content_type: str
    data: bytes


class RecordingGone(Permanent):
    """The recording no longer exists (or never did): log the call without it."""


async def fetch_recording(
    url: str,
    *,
    name: str,
    cap: int = MAX_RECORDING_BYTES,
    timeout: float = RECORDING_TIMEOUT,
) -> Recording:
    """The audio behind ``url`` (redirects followed: the bridge's signed link redirects to a
    fresh onlinePBX link). ``RetryLater`` for what may pass (network, 5xx, 429), a
    :class:`RecordingGone` for 404/410, :class:`Permanent` for a file over ``cap``."""
    path = urlsplit(url).path
    ext = posixpath.splitext(path)[1].lower()
    ext = ext if ext in AUDIO_TYPES else ".mp3"
    try:
        async with (
            asyncio.timeout(timeout),
            httpx.AsyncClient(follow_redirects=True, timeout=timeout) as client,
        ):
            response = await client.send(client.build_request("GET", url), stream=True)
            if response.status_code in (404, 410):
                await response.aclose()
                raise RecordingGone(f"recording: HTTP {response.status_code} (gone)")
            if not response.is_success:
                await response.aclose()
                status = response.status_code
                if status in (408, 425, 429) or status >= 500:
                    raise RetryLater(f"recording: HTTP {status}")
                raise Permanent(f"recording: HTTP {status}")
            data = await read_capped(response, cap)
    except AnswerTooLarge as exc:
        raise Permanent(f"recording larger than {cap} bytes: left as a link") from exc
    except (httpx.TransportError, httpx.DecodingError, TimeoutError) as exc:
        raise RetryLater(f"recording: {type(exc).__name__}") from exc
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    if not kind.startswith("audio/"):
        kind = AUDIO_TYPES[ext]
    return Recording(filename=f"{name}{ext}", content_type=kind, data=data)
