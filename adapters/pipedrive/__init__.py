"""``pipedrive``: call logs, missed-call activities and new persons in Pipedrive.

See docs/adapters/pipedrive.md. ``api`` knows Pipedrive's auth, limits and error envelope;
``adapter`` maps the bridge's calls onto Pipedrive's API v1 (call logs) and v2 (the rest).
"""

from adapters.pipedrive.adapter import PipedriveAdapter, PipedriveSettings

__all__ = ["PipedriveAdapter", "PipedriveSettings"]
