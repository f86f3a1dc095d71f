"""``hubspot``: calls, missed-call tasks and new contacts in HubSpot CRM (API v3).

See docs/adapters/hubspot.md. ``api`` knows HubSpot's auth, limits and error envelope;
``adapter`` maps the bridge's calls onto HubSpot objects.
"""

from adapters.hubspot.adapter import HubSpotAdapter, HubSpotSettings

__all__ = ["HubSpotAdapter", "HubSpotSettings"]
