"""``zoho``: calls, missed-call tasks and new leads or contacts in Zoho CRM (API v8).

See docs/adapters/zoho.md. ``settings`` holds the ``[adapters.zoho]`` keys and the credit
budget by edition, ``api`` Zoho's OAuth (per data centre), its ``Zoho-oauthtoken`` requests and
error answers, ``adapter`` the mapping onto the Contacts/Leads, Calls and Tasks modules, and
``fake`` a Zoho org that answers (and refuses) as Zoho does, for tests and the harness.
"""

from adapters.zoho.adapter import ZohoAdapter
from adapters.zoho.settings import ZohoSettings

__all__ = ["ZohoAdapter", "ZohoSettings"]
