"""A small onlinePBX API client on the adapter toolkit's :class:`CRMClient` (timeouts, rate
limit, redaction).

onlinePBX answers errors as HTTP 200 with ``status: "0"`` and a ``comment``; they become
:class:`ApiError`. The session key (``key_id:key``) is kept in the ``meta`` table so restarts
and the CLI reuse it; a new login happens only when an answer says ``isNotAuth``, and the
request is then retried once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from bridge.adapter.errors import DeliveryError
from bridge.adapter.http import CRMClient, body_excerpt
from bridge.redact import REDACTOR, Redactor
from bridge.settings import OnlinePBXSettings
from bridge.store import Storage, StorageError
from bridge.store.shared import SharedRate

AUTH_HEADER = "x-pbx-authentication"
HISTORY = "mongo_history/search.json"
MAX_WINDOW_SECONDS = 7 * 86_400


class ApiError(Exception):
    """onlinePBX refused or could not be reached; the message is safe to show."""


class NotAuthorized(ApiError):
    """The API key was refused at login (wrong key, or the key was revoked in the panel)."""


class OnlinePBX:
    def __init__(
        self, settings: OnlinePBXSettings, storage: Storage, *, redactor: Redactor = REDACTOR
    ) -> None:
        if not settings.enabled or settings.api_key is None:
            raise ValueError("[onlinepbx] domain and api_key are required")
        self.domain = settings.domain
        self._api_key = settings.api_key.get_secret_value()
        self._storage = storage
        self._meta_key = f"onlinepbx_auth:{self.domain}"
        self._redactor = redactor
        redactor.add(self._api_key)
        self._http = CRMClient(
            base_url=settings.base_url.rstrip("/") + "/",
            # Shared by every replica (and the CLI): onlinePBX allows 5 requests/s per domain.
            limiter=SharedRate(storage, f"onlinepbx:{self.domain}", settings.rate_limit),
            timeout=settings.timeout_seconds,
            redactor=redactor,
        )
        self._auth: str | None = None
        self._login_lock = asyncio.Lock()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- the API ---------------------------------------------------------------------------

    async def history(self, start: int, end: int) -> list[dict[str, Any]]:
        """Finished calls that started in ``[start, end]`` (UNIX seconds, at most 7 days)."""
        if end - start > MAX_WINDOW_SECONDS:
            raise ValueError("onlinePBX history windows are at most 7 days")
        data = await self.call(HISTORY, {"start_stamp_from": start, "start_stamp_to": end})
        return _records(data)

    async def recording_link(self, uuid: str) -> str | None:
        """A fresh (≈30-minute) download link for the call's recording; None if there is none."""
        data = await self.call(HISTORY, {"uuid": uuid, "download": 1}, missing_ok=True)
        if isinstance(data, str) and data.startswith(("https://", "http://")):
            return data
        return None

    async def call(self, path: str, form: dict[str, Any], *, missing_ok: bool = False) -> Any:
        """POST ``form`` to ``/{domain}/{path}``; the answer's ``data``.

        With ``missing_ok``, an error whose comment says "not found" returns None.
        """
        auth = await self._session()
        body = await self._post(path, form, auth)
        if body.get("isNotAuth"):
            auth = await self._login(stale=auth)
            body = await self._post(path, form, auth)
        if str(body.get("status")) == "1":
            return body.get("data")
        comment = str(body.get("comment") or "no comment")
        if missing_ok and "not found" in comment.lower():
            return None
        if body.get("isNotAuth"):
            raise ApiError(f"onlinePBX {path}: not authorised even after a new login ({comment})")
        raise ApiError(self._redactor(f"onlinePBX {path}: {comment}"))

    # --- plumbing --------------------------------------------------------------------------

    async def _post(self, path: str, form: dict[str, Any], auth: str | None) -> dict[str, Any]:
        headers = {AUTH_HEADER: auth} if auth else {}
        url = f"{self.domain}/{path}"
        try:
            response = await self._http.request("POST", url, data=form, headers=headers)
        except DeliveryError as exc:  # timeouts and network errors
            raise ApiError(f"onlinePBX {path}: {exc.reason}") from exc
        if response.status_code != 200:
            raise ApiError(
                self._redactor(
                    f"onlinePBX {path}: HTTP {response.status_code} {body_excerpt(response, 120)}"
                )
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise ApiError(f"onlinePBX {path}: the answer is not JSON") from exc
        if not isinstance(body, dict):
            raise ApiError(f"onlinePBX {path}: unexpected answer {type(body).__name__}")
        return body

    async def _session(self) -> str:
        if self._auth is None:
            try:
                self._auth = await self._storage.meta(self._meta_key)
            except StorageError as exc:
                raise ApiError(f"onlinePBX: the stored session is unreadable ({exc})") from exc
            if self._auth is not None:
                self._redactor.add(self._auth)
        return self._auth or await self._login(stale=None)

    async def _login(self, stale: str | None) -> str:
        """Log in, unless another request (or another replica) already replaced the
        ``stale`` key meanwhile: one login at a time across every process on the storage,
        and the others adopt the key it stored."""
        try:
            async with self._login_lock, self._storage.lock(f"onlinepbx-login:{self.domain}"):
                return await self._login_locked(stale)
        except StorageError as exc:
            raise ApiError(f"onlinePBX login: the database is unavailable ({exc})") from exc

    async def _login_locked(self, stale: str | None) -> str:
        if self._auth is not None and self._auth != stale:
            return self._auth
        stored = await self._storage.meta(self._meta_key)
        if stored is not None and stored != stale:
            self._redactor.add(stored)
            self._auth = stored
            return stored
        body = await self._post("auth.json", {"auth_key": self._api_key}, None)
        data = body.get("data")
        if str(body.get("status")) != "1" or not isinstance(data, dict):
            comment = self._redactor(str(body.get("comment") or "login refused"))
            raise NotAuthorized(
                f"onlinePBX login for {self.domain} failed: {comment}"
                " (check [onlinepbx] api_key and domain)"
            )
        auth = f"{data.get('key_id', '')}:{data.get('key', '')}"
        self._redactor.add(auth, str(data.get("key") or ""))
        await self._storage.put_meta(self._meta_key, auth)
        self._auth = auth
        return auth


def _records(data: Any) -> list[dict[str, Any]]:
    if data is None:
        return []
    if not isinstance(data, list):
        raise ApiError(f"onlinePBX history: expected a list, got {type(data).__name__}")
    return [r for r in data if isinstance(r, dict)]
