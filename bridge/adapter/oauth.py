"""OAuth 2.0 refresh-token handling shared by CRM adapters.

The refresh call itself is declared (``bridge.adapter.auth.OAuth2``); this keeps the token pair
in the bridge's database (``adapter_state``), refreshes it shortly before it expires and once
after a 401, and makes sure concurrent jobs and processes never refresh twice (a refresh token
is often single-use: a second refresh with the old one would log the bridge out).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from bridge.adapter.errors import Permanent, RetryLater
from bridge.adapter.locks import LockTimeout, ProcessLocks
from bridge.store.state import AdapterState

if TYPE_CHECKING:
    from bridge.adapter.contract import AdapterContext

STATE_KEY = "oauth"
SEED = "seed"  # fingerprint of the configured first grant, stored beside the pair
EARLY = 120.0  # refresh this many seconds before the access token expires


@dataclass
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float | None = None  # unix seconds; None = unknown (refresh on 401 only)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. a token's api_domain


Refresher = Callable[[str], Awaitable[TokenPair]]
"""Given the current refresh token, ask the vendor for a new pair (raise Permanent if refused)."""


def _fingerprint(secret: str | None) -> str | None:
    return hashlib.sha256(secret.encode()).hexdigest()[:16] if secret else None


class OAuthTokens:
    """The current token pair of one adapter, shared with every other process on the database.

    A pair refreshed from the configured grant is kept in ``adapter_state`` together with a
    fingerprint of that grant: when the admin configures a new refresh token (or code), the
    stored pair is dropped and the new grant is used, instead of the old pair winning forever.

    Another process (``pbx-bridge check`` beside ``serve``, a second server) may refresh the
    pair at any time, and a refresh token is often single-use. So a refresh happens only under
    a lock spanning processes, after re-reading the stored pair: a pair someone else already
    refreshed is adopted, never refreshed again (that would spend a token the other process
    holds, or fail with ``invalid_grant`` and log every job out while a valid pair sits in the
    database). After the vendor refuses our access token, or our refresh, the stored pair is
    re-read the same way before anything is declared broken.
    """

    @classmethod
    def from_context(
        cls, ctx: AdapterContext, refresher: Refresher, initial: SecretStr | str | None
    ) -> OAuthTokens:
        """The usual wiring: the adapter's state, clock, redactor and locks; ``initial`` from
        settings."""
        if isinstance(initial, SecretStr):
            initial = initial.get_secret_value()
        return cls(
            ctx.state,
            refresher,
            initial_refresh_token=initial or None,
            clock=ctx.clock,
            redact=ctx.redactor.add,
            locks=ctx.state.locks,  # the storage's: advisory locks on PostgreSQL
            lock_name=f"oauth:{ctx.name}",
        )

    def __init__(
        self,
        state: AdapterState,
        refresher: Refresher,
        *,
        initial_refresh_token: str | None,
        clock: Callable[[], float],
        redact: Callable[[str], None] = lambda secret: None,
        locks: ProcessLocks | None = None,
        lock_name: str = "oauth",
    ) -> None:
        self._state = state
        self._refresher = refresher
        self._initial = initial_refresh_token
        self._clock = clock
        self._redact = redact
        self._locks = locks
        self._lock_name = lock_name
        self._pair: TokenPair | None = None
        self._lock = asyncio.Lock()

    async def _read(self) -> TokenPair | None:
        """The stored pair (None when there is none, or a newer grant is configured)."""
        raw = await self._state.get(STATE_KEY)
        if not raw:
            return None
        stored = json.loads(raw)
        seed = stored.pop(SEED, None)
        configured = _fingerprint(self._initial)
        if configured is not None and seed is not None and seed != configured:
            return None  # a new grant was configured: it replaces the stored pair
        pair = TokenPair(**stored)
        self._redact(pair.access_token)
        self._redact(pair.refresh_token)
        return pair

    def _fresh(self, pair: TokenPair | None) -> bool:
        return pair is not None and (
            pair.expires_at is None or pair.expires_at - EARLY > self._clock()
        )

    @contextlib.asynccontextmanager
    async def _exclusive(self) -> AsyncIterator[None]:
        """This process's lock, then the one every process on the database shares."""
        async with self._lock:
            if self._locks is None:
                yield
                return
            try:
                async with self._locks.hold(self._lock_name):
                    yield
            except LockTimeout as exc:
                raise RetryLater(f"OAuth: another process is refreshing the token ({exc})") from exc

    async def current(self) -> TokenPair:
        """A pair whose access token is valid now (adopting or refreshing first if needed)."""
        if self._pair is None:
            async with self._lock:
                if self._pair is None:
                    self._pair = await self._read()
        if self._fresh(self._pair):
            assert self._pair is not None
            return self._pair
        async with self._exclusive():
            stored = await self._read()  # another process may have refreshed it meanwhile
            if self._fresh(stored):
                assert stored is not None
                self._pair = stored
                return stored
            return await self._refresh(stored)

    async def access_token(self) -> str:
        return (await self.current()).access_token

    async def refresh_after_401(self, rejected_access_token: str) -> str:
        """After the vendor refused ``rejected_access_token``: the pair another job or process
        already refreshed, else one refresh."""
        async with self._exclusive():
            stored = await self._read()
            if stored is not None and stored.access_token != rejected_access_token:
                self._pair = stored
                return stored.access_token
            return (await self._refresh(stored)).access_token

    async def _refresh(self, pair: TokenPair | None) -> TokenPair:
        refresh_token = pair.refresh_token if pair else self._initial
        if not refresh_token:
            raise Permanent("no OAuth refresh token: set refresh_token in the adapter settings")
        try:
            new = await self._refresher(refresh_token)
        except Permanent:
            # Refused: unless a process that does not take the lock (an older version)
            # refreshed it meanwhile, the grant really is gone.
            stored = await self._read()
            if stored is not None and stored.refresh_token != refresh_token:
                self._pair = stored
                return stored
            raise
        self._redact(new.access_token)
        self._redact(new.refresh_token)
        # Persist before use: a crash now must not leave us with a spent refresh token.
        record = {**asdict(new), SEED: _fingerprint(self._initial)}
        await self._state.put(STATE_KEY, json.dumps(record))
        self._pair = new
        return new
