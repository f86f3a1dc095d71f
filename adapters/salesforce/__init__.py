"""``salesforce``: calls as completed Call tasks, missed calls as open tasks with a reminder,
new Leads or Contacts, in Salesforce (REST API, OAuth 2.0 client credentials).

See docs/adapters/salesforce.md. ``api`` knows the token flow and Salesforce's error arrays;
``adapter`` maps calls onto SOSL, Task, Lead and Contact; ``fake`` is a loopback org for the
tests and the reliability harness.
"""

from adapters.salesforce.adapter import SalesforceAdapter
from adapters.salesforce.settings import SalesforceSettings

__all__ = ["SalesforceAdapter", "SalesforceSettings"]
