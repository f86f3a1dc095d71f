"""A stand-in CRM adapter for bench.lookups (its own module, so the registry imports the
same class the benchmark reads the counts from)."""

from __future__ import annotations

from typing import ClassVar

from bridge.adapter import (
    Adapter,
    AdapterSettings,
    CallLog,
    CheckResult,
    Contact,
    FollowUp,
    NewContact,
)
from bridge.phones import Phone


class ExactSearchCRM(Adapter):
    """A CRM whose contact search is an exact match on one stored string."""

    Settings = AdapterSettings
    store: ClassVar[dict[str, str]] = {}  # stored phone string → contact id
    lookups = 0

    async def find_contact(self, phone: Phone) -> Contact | None:
        for form in phone.variants():
            type(self).lookups += 1
            if form in self.store:
                return Contact(self.store[form])
        return None

    async def create_contact(self, new: NewContact) -> Contact:
        self.store[new.phone.e164] = f"c{len(self.store)}"
        return Contact(self.store[new.phone.e164])

    async def log_call(self, log: CallLog) -> str:
        return f"call-{log.call.uuid}"

    async def create_task(self, task: FollowUp) -> str:
        return f"task-{task.call.uuid}"

    async def check(self) -> CheckResult:
        return CheckResult(account="bench")
