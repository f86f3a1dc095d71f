"""Text that came from outside (webhooks, CRM answers) made safe to show and to send on.

C1 control characters (U+0080–U+009F: 8-bit terminal escapes such as CSI, invisible in most
fonts) and Unicode bidi controls (overrides, embeddings, isolates, marks: "Trojan Source"
reordering, a number that reads backwards in a CRM) are stripped, and so are C0 controls
except tab and newline. Applied to the texts the bridge writes into CRMs and to everything
the CLI prints.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

_BIDI = "\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
UNSAFE = re.compile(f"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI}]")
# On a terminal stream CR stays (progress bars); stderr also keeps ESC (tqdm, coloured logs).
UNSAFE_STDOUT = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")
UNSAFE_STDERR = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f{_BIDI}]")


def clean(text: str) -> str:
    """``text`` without C0/C1 controls (tab and newline kept) and bidi controls."""
    return UNSAFE.sub("", text)


class SafeStream(io.TextIOBase):
    """A text stream that strips controls from everything written through it."""

    def __init__(self, inner: TextIO, pattern: re.Pattern[str]) -> None:
        self.inner = inner
        self._pattern = pattern

    def write(self, text: str) -> int:
        self.inner.write(self._pattern.sub("", text))
        return len(text)

    def flush(self) -> None:
        self.inner.flush()

    def isatty(self) -> bool:
        return self.inner.isatty()

    def fileno(self) -> int:
        return self.inner.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.inner, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@contextmanager
def safe_output() -> Iterator[None]:
    """stdout without any control but tab/newline/CR; stderr keeping ESC (progress bars,
    coloured console logs), both without C1 and bidi controls."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = SafeStream(out, UNSAFE_STDOUT)  # type: ignore[assignment]
    sys.stderr = SafeStream(err, UNSAFE_STDERR)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
