"""``local``: call logs and follow-up tasks kept in the bridge's own SQLite file."""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="local",
    adapter="adapters.local.adapter:LocalAdapter",
    title="local (the bridge's own database)",
    summary="keeps call logs and follow-up tasks in the bridge's SQLite file"
    " (`pbx-bridge calls`, `pbx-bridge tasks`); the embedded default, no CRM needed",
    idempotency_key="call_key",  # UNIQUE in its own tables: a repeat is the same row
    deduplicates=True,
    lists_users=False,
    capabilities=frozenset(
        {
            "log_call",
            "create_task",
            "check",
            "find_contact",
            "create_contact",
            "ringing",
            "answered",
            "over",
        }
    ),
    docs="docs/adapters/local.md",
)
