"""Keep secrets out of logs, stored error reasons, CLI output and the status page."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

MASK = "***"


class Redactor:
    """Replaces every known secret (and long enough parts of URLs holding one) with ***."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self.add(*secrets)

    def add(self, *secrets: str | None) -> None:
        for s in secrets:
            if s and len(s) >= 4:
                self._secrets.add(s)

    def __call__(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def __bool__(self) -> bool:
        return bool(self._secrets)


def redact_tree(value: Any, redactor: Redactor | None = None) -> Any:
    """``value`` (JSON-like: dicts, lists, strings) with every string redacted."""
    redactor = redactor or REDACTOR
    if isinstance(value, dict):
        return {k: redact_tree(v, redactor) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v, redactor) for v in value]
    if isinstance(value, str):
        return redactor(value)
    return value


# One process-wide redactor: logging, the worker and the CLI all mask through it.
REDACTOR = Redactor()
