"""Phone numbers and extensions, as onlinePBX sends them, made comparable.

onlinePBX writes the same client as ``+79510057057``, ``79510057057`` or ``89510057057`` (or
with spaces and brackets when typed by a person), and extensions as ``505`` or
``510@pbx.onpbx.ru``. CRMs search in different ways, many of them by exact string, so every
external number carries the variants an adapter may need to try.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

_EXTENSION_HOST = re.compile(r"^\s*([0-9*#]+)@[\w.-]+\s*$")
_DIGITS = re.compile(r"\D+")


@dataclass(frozen=True, slots=True)
class Phone:
    """An external phone number, normalized to E.164."""

    e164: str  # "+79221111123"
    international: str  # "+7 922 111-11-23", for texts people read
    national: str  # "89221111123" for RU-style trunk prefix, else national digits
    region: str | None
    # The national significant number: the digits after the country code, Italian-style
    # leading zeros kept ("0612345678" for +39 06 1234 5678). Its length is not always 10.
    significant: str = ""

    @property
    def digits(self) -> str:
        return self.e164.lstrip("+")

    @property
    def last10(self) -> str:
        return self.digits[-10:]

    @property
    def short_national(self) -> bool:
        """True when the national number is not 10 digits long, so :attr:`last10` runs into
        the country code (+49 30 1234567 → "9301234567") and matches no stored national
        form: search such numbers by :attr:`significant` too."""
        return bool(self.significant) and len(self.significant) != 10

    def variants(self) -> list[str]:
        """Forms to try against a CRM whose search is exact, most specific first."""
        out: list[str] = []
        for v in (self.e164, self.digits, self.national, self.significant, self.last10):
            if v and v not in out:
                out.append(v)
        return out

    def matches(self, other: str) -> bool:
        """True when ``other`` (a CRM's stored value, any format) is this number.

        Compares the last 10 digits (how amoCRM matches calls), falling back to all
        digits for short numbers.
        """
        digits = _DIGITS.sub("", other or "")
        if not digits:
            return False
        if self.short_national and digits.endswith(self.significant):
            # The national number after nothing, a trunk "0", the country code or "00" and
            # the country code: never a longer number that merely ends the same way.
            code = self.digits[: -len(self.significant)]
            return digits[: -len(self.significant)] in {"", "0", code, "00" + code}
        if len(digits) >= 10 and len(self.digits) >= 10:
            return digits[-10:] == self.last10
        return digits == self.digits


@dataclass(frozen=True, slots=True)
class Extension:
    """An internal PBX extension (``505``, or ``510`` out of ``510@pbx.onpbx.ru``)."""

    number: str


class NumberParser:
    def __init__(self, default_region: str = "RU", extension_max_digits: int = 6) -> None:
        self.default_region = default_region.upper()
        self.extension_max_digits = extension_max_digits

    def parse(self, raw: str | None) -> Phone | Extension | None:
        """Classify ``raw``: an external :class:`Phone`, an :class:`Extension`, or None."""
        if raw is None:
            return None
        text = raw.strip()
        if not text:
            return None
        m = _EXTENSION_HOST.match(text)
        if m:
            return Extension(m.group(1))
        digits = _DIGITS.sub("", text)
        if not digits:
            return None
        if len(digits) <= self.extension_max_digits and not text.startswith("+"):
            return Extension(digits)
        return self.phone(text)

    def phone(self, text: str) -> Phone | None:
        digits = _DIGITS.sub("", text)
        candidates = []
        if text.strip().startswith("+"):
            candidates.append(("+" + digits, None))
        else:
            # Numbers without "+" are tried in the default region first ("8 922…" and
            # "922…" in RU), then as international digits ("7922…", "49301234567").
            candidates.append((digits, self.default_region))
            candidates.append(("+" + digits, None))
        for candidate, region in candidates:
            try:
                parsed = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(parsed):
                return self._make(parsed)
        # Not valid by the metadata (new ranges, test numbers): keep it if plausible.
        for candidate, region in candidates:
            try:
                parsed = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_possible_number(parsed) and phonenumbers.region_code_for_number(
                parsed
            ):
                return self._make(parsed)
        return None

    @staticmethod
    def _make(parsed: phonenumbers.PhoneNumber) -> Phone:
        e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
        region = phonenumbers.region_code_for_number(parsed)
        significant = phonenumbers.national_significant_number(parsed)
        national = "8" + significant if parsed.country_code == 7 else significant
        return Phone(
            e164=e164,
            international=phonenumbers.format_number(
                parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL
            ),
            national=national,
            region=region,
            significant=significant,
        )
