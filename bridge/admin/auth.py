"""Passwords, sessions and CSRF tokens of the console.

Passwords: scrypt (stdlib ``hashlib.scrypt``, memory-hard) in ``scrypt$n$r$p$salt$hash``, so
a copied settings file does not give the password away. A plain ``[admin] password`` is
compared in constant time.

Sessions are signed cookies (``issued.nonce.hmac``), the key kept in the database's ``meta``
table and mixed with the password: every process of one deployment accepts the same
session, and changing the password logs everyone out. Logout revokes the nonce in the
storage (``admin_revoked``, through the reports port), so every process and replica on that
storage refuses the cookie from then on; the session also ends after ``admin.session_hours``.
The CSRF token is an HMAC of the session nonce: a page from another site cannot know it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.settings import ADMIN_MIN_PASSWORD, AdminSettings

if TYPE_CHECKING:
    from bridge.store.reports import Reports

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
SALT_BYTES = 16
MIN_PASSWORD = ADMIN_MIN_PASSWORD


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The ``password_hash`` value for ``password``."""
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32
    )
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_hash(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=_unb64(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(_unb64(digest)),
            maxmem=128 * int(n) * int(r) * int(p) + 2**20,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, _unb64(digest))


def password_ok(given: str, admin: AdminSettings) -> bool:
    if admin.password_hash and verify_hash(given, admin.password_hash):
        return True
    if admin.password is not None:
        expected = admin.password.get_secret_value().encode()
        return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected)
    return False


class Sessions:
    """Issues and checks session cookies and their CSRF tokens; revocations are stored."""

    def __init__(
        self,
        key: bytes,
        admin: AdminSettings,
        reports: Reports,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Mixing in what the password is makes every old cookie invalid once it changes.
        marker = (admin.password_hash or "") + (
            admin.password.get_secret_value() if admin.password else ""
        )
        self._key = hmac.new(key, marker.encode(), hashlib.sha256).digest()
        self._lifetime = admin.session_hours * 3600
        self._reports = reports
        self._clock = clock

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())

    def issue(self) -> str:
        body = f"{int(self._clock())}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._sign(body)}"

    @property
    def lifetime(self) -> float:
        return self._lifetime

    def _signed(self, cookie: str | None) -> tuple[int, str] | None:
        """(issued, nonce) of a cookie this deployment signed and that has not expired."""
        if not cookie or cookie.count(".") != 2:
            return None
        issued, nonce, sig = cookie.split(".")
        if not hmac.compare_digest(sig, self._sign(f"{issued}.{nonce}")):
            return None
        try:
            age = self._clock() - int(issued)
        except ValueError:
            return None
        if age < -60 or age > self._lifetime:
            return None
        return int(issued), nonce

    async def nonce(self, cookie: str | None) -> str | None:
        """The session's nonce if ``cookie`` is a valid, live session; else None.

        Asks the storage whether it was revoked (by a logout on any replica): one primary-key
        lookup per request, only for cookies that carry a valid signature."""
        signed = self._signed(cookie)
        if signed is None or await self._reports.session_revoked(signed[1]):
            return None
        return signed[1]

    async def revoke(self, cookie: str | None) -> None:
        signed = self._signed(cookie)
        if signed is None:
            return
        issued, nonce = signed
        # Kept until the cookie would have expired anyway, then pruned.
        await self._reports.revoke_session(nonce, issued + self._lifetime + 60, self._clock())

    def csrf(self, nonce: str) -> str:
        return self._sign(f"csrf:{nonce}")

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest(str(given), self.csrf(nonce))


def new_session_key() -> str:
    return secrets.token_urlsafe(32)
