"""What one job does with one adapter: filter, find or create the contact, pick the
responsible user, write to the CRM, and remember the created id so it is never written twice.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from bridge.adapter.contract import (
    CARD_ACTIONS,
    CREATE_CONTACT,
    CREATE_TASK,
    FIND_CONTACT,
    LIVE_ACTIONS,
    LOG_CALL,
    RINGING,
    Adapter,
    AdapterSettings,
    CallLog,
    Contact,
    FollowUp,
    LiveCall,
    NewContact,
    capabilities,
)
from bridge.adapter.outcomes import Delivered, Outcome, Skipped
from bridge.call import CALL_ANSWERED, CALL_OVER_EVENTS, Call, build_call
from bridge.deliver.contacts import ContactCache
from bridge.onlinepbx.links import RecordingLinks
from bridge.phones import NumberParser
from bridge.schedule import due_time
from bridge.settings import ScheduleSettings
from bridge.store import CallState, Job, Storage
from bridge.store.state import call_key
from bridge.texts import Texts

CONTACT_KEY = "contact"
LIVE_MAX_AGE = 60.0  # seconds after its webhook a card is still worth showing
LIVE_DONE = "live.{action}.{event}"  # CallState: a live action already done for this event


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
        live_max_age: float = LIVE_MAX_AGE,
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
        self.live_max_age = live_max_age
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
        if job.action in LIVE_ACTIONS:
            return await self._live(job, call, state)
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

    async def card_useless(self, job: Job) -> str | None:
        """Why a card job (``ringing``/``answered``) would show nothing worth seeing now."""
        if job.recovered:
            return "recovered from the call history: the call is over"
        age = self._clock() - job.created_at
        if age > self.live_max_age:
            limit = f"live_max_age_seconds {self.live_max_age:g}"
            return f"stale: the event is {age:.0f} s old ({limit})"
        stored = await self._call_events(job)
        over = [e for e in CALL_OVER_EVENTS if e in stored]
        if over:
            return f"the call is already over ({over[0]} received)"
        if job.action == RINGING and CALL_ANSWERED in stored:
            return "the call was already answered"
        return None

    async def _call_events(self, job: Job) -> set[str]:
        """The events stored so far for the job's call (one indexed read, both backends)."""
        return {e.partition(":")[0] for e in await self._storage.call_events(job.domain, job.uuid)}

    async def _live(self, job: Job, call: Call, state: CallState) -> Outcome:
        if job.action in CARD_ACTIONS:
            why = await self.card_useless(job)
            if why:
                return Skipped(why)
            if call.extension is None:
                return Skipped("no extension rings (the call has not reached a user yet)")
        done_key = LIVE_DONE.format(action=job.action, event=job.event)
        already = await state.get(done_key)
        if already is not None:
            return Delivered(already)
        mapped = self.settings.users.get(call.extension) if call.extension else None
        live = LiveCall(
            call=call,
            extension=call.extension,
            user_id=mapped or self.settings.default_user,
            contact=await self._live_contact(call, state, lookup=job.action in CARD_ACTIONS),
            state=state,
        )
        done = await getattr(self.adapter, job.action)(live)
        if isinstance(done, Skipped):
            return done  # not remembered: a later try (or event) may still do it
        await state.put(done_key, str(done))
        return Delivered(str(done))

    async def _live_contact(self, call: Call, state: CallState, *, lookup: bool) -> Contact | None:
        """What is known about the number without creating anything (creation is the
        post-call policy's); a CRM lookup only for a card of an adapter that wants one
        (``live_lookup``)."""
        if not self._finds or call.client is None:
            return None
        remembered = await state.get(CONTACT_KEY)
        if remembered is not None:
            return Contact(**json.loads(remembered))
        if not (lookup and self.adapter.live_lookup):
            return self._contacts.peek(call.client)
        async with self._contacts.number(call.client):
            return await self._contacts.find(call.client, self.adapter.find_contact)  # type: ignore[attr-defined]

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
