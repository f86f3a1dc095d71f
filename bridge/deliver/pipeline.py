"""What one job does with one adapter: filter, find or create the contact, pick the
responsible user, write to the CRM, and remember the created id so it is never written twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bridge.adapter.contract import (
    CREATE_CONTACT,
    CREATE_TASK,
    FIND_CONTACT,
    LOG_CALL,
    Adapter,
    AdapterSettings,
    CallLog,
    Contact,
    FollowUp,
    NewContact,
    capabilities,
)
from bridge.adapter.outcomes import Delivered, Outcome, Skipped
from bridge.call import Call, build_call
from bridge.deliver.contacts import ContactCache
from bridge.onlinepbx.links import RecordingLinks
from bridge.phones import NumberParser
from bridge.schedule import due_time
from bridge.settings import ScheduleSettings
from bridge.store import CallState, Job, Storage
from bridge.store.state import call_key
from bridge.texts import Texts

CONTACT_KEY = "contact"


def _digits(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())[-10:]


class Pipeline:
    def __init__(
        self,
        name: str,
        adapter: Adapter,
        settings: AdapterSettings,
        *,
        storage: Storage,
        parser: NumberParser,
        texts: Texts,
        schedule: ScheduleSettings,
        clock: Any,
        links: RecordingLinks | None = None,
    ) -> None:
        self.name = name
        self.adapter = adapter
        self.settings = settings
        self._storage = storage
        self._parser = parser
        self._texts = texts
        self._schedule = schedule
        self._clock = clock
        self._gateways = {_digits(g) for g in settings.gateways}
        self._links = links  # None: adapters get onlinePBX's own (30-minute) recording link
        self._contacts = ContactCache(settings.contact_cache_seconds, clock)
        # Capabilities by presence: an adapter without contact methods still logs every call.
        can = capabilities(adapter)
        self._finds = FIND_CONTACT in can
        self._creates = CREATE_CONTACT in can

    def skip_reason(self, call: Call, action: str) -> str | None:
        """Why this call causes nothing for this adapter (None: it does)."""
        s = self.settings
        if call.internal:
            return "internal call or no client number"
        if s.directions and call.direction not in s.directions:
            return f"direction {call.direction} not in directions"
        if self._gateways and _digits(call.gateway) not in self._gateways:
            return f"line {call.gateway or '(none)'} not in gateways"
        # A missed call reached no extension: the filter applies only when one is known.
        scoped = action == LOG_CALL or call.extension
        if s.extensions and scoped and call.extension not in s.extensions:
            return f"extension {call.extension or '(none)'} not in extensions"
        if action == LOG_CALL and call.talk_seconds < s.min_talk_seconds:
            return f"talk time {call.talk_seconds}s under min_talk_seconds"
        return None

    async def run(self, job: Job) -> Outcome:
        """Deliver ``job``: what the CRM holds now, or why nothing. Raises DeliveryError."""
        call = build_call(job.payload, self._parser, recovered=job.recovered)
        if self._links is not None:
            call = self._links.apply(call, self._clock())
        reason = self.skip_reason(call, job.action)
        if reason:
            return Skipped(reason)
        state = CallState(self._storage, self.name, call_key(job.domain, job.uuid), self._clock)
        already = await state.get(job.action)
        if already is not None:
            return Delivered(already)
        contact = await self._contact(call, state)
        users = self.settings.users
        mapped = users.get(call.extension) if call.extension else None
        owner = contact.owner_id if contact else None
        if job.action == LOG_CALL:
            log = CallLog(
                call=call,
                contact=contact,
                user_id=mapped or owner or self.settings.default_user,
                title=self._texts.call_title(call),
                result=self._texts.outcome(call),
                state=state,
            )
            created = await self.adapter.log_call(log)
        elif job.action == CREATE_TASK:
            now = datetime.fromtimestamp(self._clock(), UTC)
            task = FollowUp(
                call=call,
                contact=contact,
                user_id=owner or mapped or self.settings.default_user,
                due_at=due_time(now, self.settings.task_due_minutes, self._schedule),
                title=self._texts.render("task_title", call),
                description=self._texts.render("task_description", call),
                state=state,
            )
            created = await self.adapter.create_task(task)
        else:
            return Skipped(f"unknown action {job.action}")
        if isinstance(created, Skipped):
            return created  # not remembered: nothing was created
        await state.put(job.action, str(created))
        return Delivered(str(created))

    def _may_create(self, call: Call) -> bool:
        policy = self.settings.create_contacts
        return policy == "always" or (policy == "inbound" and call.direction == "inbound")

    async def _contact(self, call: Call, state: CallState) -> Contact | None:
        if not (self._finds or self._creates) or call.client is None:
            return None
        remembered = await state.get(CONTACT_KEY)
        if remembered is not None:
            return Contact(**json.loads(remembered))
        async with self._contacts.number(call.client):
            contact = None
            if self._finds:
                find = self.adapter.find_contact  # type: ignore[attr-defined]
                contact = await self._contacts.find(call.client, find)
            if contact is None and self._creates and self._may_create(call):
                mapped = self.settings.users.get(call.extension) if call.extension else None
                contact = await self.adapter.create_contact(  # type: ignore[attr-defined]
                    NewContact(
                        phone=call.client,
                        name=self._texts.render("contact_name", call),
                        owner_id=mapped or self.settings.default_user,
                        call=call,
                        state=state,
                    )
                )
                self._contacts.created(call.client, contact)
                # Remembered at once: a retry of a later step must not create a second contact.
                await state.put(CONTACT_KEY, json.dumps(asdict(contact), ensure_ascii=False))
        return contact
