"""``GET /recordings/{uuid}?exp=…&sig=…``: a stable link to a call recording.

onlinePBX download links die about 30 minutes after they are issued, so the CRM stores this
link instead; each opening asks onlinePBX for a fresh one (kept for a few minutes, well inside
its lifetime) and redirects to it, or streams it for CRMs whose players cannot follow a
redirect, passing ``Range`` through so seeking works.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import structlog
from aiohttp import web

from bridge.keys import RECORDINGS
from bridge.onlinepbx.client import ApiError, OnlinePBX
from bridge.onlinepbx.links import AUDIO_SUFFIX, RecordingLinks

log = structlog.get_logger("bridge.recordings")

FRESH_SECONDS = 10 * 60  # reuse a fresh link this long (onlinePBX keeps it ~30 minutes)
PASSED_HEADERS = (
    "Content-Type",
    "Content-Length",
    "Content-Range",
    "Content-Encoding",
    "Accept-Ranges",
)
CHUNK = 64 * 1024


@dataclass
class Recordings:
    """What the route needs: the links to check, the API, how to answer."""

    links: RecordingLinks
    api: OnlinePBX
    mode: str  # "redirect" | "stream"
    clock: Callable[[], float]
    download: httpx.AsyncClient = field(
        default_factory=lambda: httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0))
    )
    _fresh: dict[str, tuple[str, float]] = field(default_factory=dict)

    async def fresh_link(self, uuid: str, *, renew: bool = False) -> str | None:
        now = self.clock()
        cached = self._fresh.get(uuid)
        if cached and not renew and now - cached[1] < FRESH_SECONDS:
            return cached[0]
        link = await self.api.recording_link(uuid)
        self._fresh = {u: v for u, v in self._fresh.items() if now - v[1] < FRESH_SECONDS}
        if link is None:
            self._fresh.pop(uuid, None)
        else:
            self._fresh[uuid] = (link, now)
        return link

    async def aclose(self) -> None:
        await self.download.aclose()


def _error(status: int, error: str, detail: str | None = None) -> web.Response:
    body = {"ok": False, "error": error}
    if detail:
        body["detail"] = detail
    return web.json_response(body, status=status, headers={"Cache-Control": "no-store"})


NOT_FOUND = "onlinePBX has no recording for this call (it was not recorded, or it has been deleted)"


async def handle_recording(request: web.Request) -> web.StreamResponse:
    recordings = request.app.get(RECORDINGS)
    uuid = request.match_info["uuid"].removesuffix(AUDIO_SUFFIX)
    exp, sig = request.query.get("exp", ""), request.query.get("sig", "")
    if recordings is None:
        return _error(404, "not_found")
    if not recordings.links.valid(uuid, exp, sig, recordings.clock()):
        log.warning("recording link refused: bad or expired signature", peer=request.remote)
        return _error(403, "forbidden")
    try:
        link = await recordings.fresh_link(uuid)
    except ApiError as exc:
        log.error("could not get a recording link from onlinePBX", uuid=uuid, error=str(exc))
        return _error(502, "pbx_unavailable", "onlinePBX did not answer; try again shortly")
    if link is None:
        return _error(404, "recording_not_found", NOT_FOUND)
    if recordings.mode == "redirect":
        raise web.HTTPFound(link, headers={"Cache-Control": "no-store"})
    return await _stream(request, recordings, uuid, link)


async def _stream(
    request: web.Request, recordings: Recordings, uuid: str, link: str
) -> web.StreamResponse:
    headers = {"Range": request.headers["Range"]} if "Range" in request.headers else {}
    try:
        upstream = await _open(recordings, link, headers)
        if upstream.status_code == 404:  # the cached link expired early: ask once more
            await upstream.aclose()
            link = await recordings.fresh_link(uuid, renew=True) or ""
            if not link:
                return _error(404, "recording_not_found", NOT_FOUND)
            upstream = await _open(recordings, link, headers)
    except (httpx.HTTPError, ApiError) as exc:
        log.error("recording download failed", uuid=uuid, error=type(exc).__name__)
        return _error(502, "pbx_unavailable", "the recording could not be fetched; try again")
    try:
        if upstream.status_code == 404:
            return _error(404, "recording_not_found", NOT_FOUND)
        if upstream.status_code not in (200, 206, 416):
            log.error("recording download failed", uuid=uuid, status=upstream.status_code)
            return _error(502, "pbx_unavailable", "the recording could not be fetched; try again")
        response = web.StreamResponse(status=upstream.status_code)
        for name in PASSED_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        response.headers["Cache-Control"] = "private, max-age=600"
        await response.prepare(request)
        async for chunk in upstream.aiter_raw(CHUNK):
            await response.write(chunk)
        await response.write_eof()
        return response
    finally:
        await upstream.aclose()


async def _open(recordings: Recordings, link: str, headers: dict[str, str]) -> httpx.Response:
    request = recordings.download.build_request("GET", link, headers=headers)
    return await recordings.download.send(request, stream=True)
