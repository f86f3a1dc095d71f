"""Prometheus metrics, one registry per app (so tests and embedders never collide).

Label values come from bounded sets only: an ``event`` label is one of onlinePBX's event
names or ``other`` (a sender can make up any name that passes validation, and every new value
would be a new series kept for the life of the process), a CRM status code is a real HTTP code
or ``other``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# onlinePBX's webhook events (its panel's list); anything else is counted as "other"
EVENTS = frozenset({"call_start", "call_user_start", "call_answered", "call_end", "call_missed"})
OTHER = "other"
CODE_WORDS = frozenset({"timeout", "network_error", "too_large"})


def event_label(event: str) -> str:
    return event if event in EVENTS or event == "-" else OTHER


def code_label(code: str) -> str:
    if code in CODE_WORDS or (code.isdigit() and 100 <= int(code) <= 599):
        return code
    return OTHER


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events = Counter(
            "pbx_bridge_events",
            "Webhook requests by event type and outcome",
            ["event", "outcome"],
            registry=self.registry,
        )
        self.jobs = Counter(
            "pbx_bridge_jobs",
            "Job attempts finished, by adapter and resulting status",
            ["adapter", "status"],
            registry=self.registry,
        )
        self.outbox = Gauge(
            "pbx_bridge_outbox_jobs",
            "Jobs in the outbox by adapter and status",
            ["adapter", "status"],
            registry=self.registry,
        )
        self.delivery_latency = Histogram(
            "pbx_bridge_delivery_latency_seconds",
            "From the event's arrival to its successful delivery",
            ["adapter"],
            registry=self.registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400),
        )
        self.crm_requests = Counter(
            "pbx_bridge_crm_requests",
            "Requests sent to CRMs, by adapter and status code",
            ["adapter", "code"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
