"""What a delivery ends with, as types (not strings that look like CRM ids).

An adapter's ``log_call`` / ``create_task`` returns the created object's id (a ``str``) or
:class:`Skipped`; the pipeline turns that into :class:`Delivered` or :class:`Skipped`. Only a
``Delivered`` id is remembered as "already in the CRM"; a ``Skipped`` job is booked as done with
its reason and its own metric label, so a later retry or redelivery asks again.
"""

from __future__ import annotations

from dataclasses import dataclass

SKIPPED_LABEL = "skipped"  # the jobs metric's status label for a skipped job


@dataclass(frozen=True, slots=True)
class Delivered:
    """The CRM holds the call now; ``id`` is what the adapter created (or created before)."""

    id: str

    @property
    def result(self) -> str:
        return self.id


@dataclass(frozen=True, slots=True)
class Skipped:
    """Nothing to write, on purpose (a filter, or the CRM has nowhere to put it)."""

    reason: str

    @property
    def result(self) -> str:
        return f"skipped: {self.reason}"


Outcome = Delivered | Skipped
