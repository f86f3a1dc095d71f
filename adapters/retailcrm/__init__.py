"""``retailcrm``: calls, missed-call tasks and new customers in RetailCRM (API v5).

See docs/adapters/retailcrm.md. ``api`` knows RetailCRM's key, form bodies and error envelope;
``adapter`` maps the bridge's calls onto its telephony API, customers and tasks; ``fake`` is
a loopback RetailCRM for the tests and the reliability harness.
"""

from adapters.retailcrm.adapter import RetailCRMAdapter
from adapters.retailcrm.settings import RetailCRMSettings

__all__ = ["RetailCRMAdapter", "RetailCRMSettings"]
