"""pbx-bridge: onlinePBX call events in, CRM call logs and follow-up tasks out.

Data flow, one package per step: ``receive`` (webhook) → ``store`` (SQLite events + outbox)
→ ``deliver`` (worker, retries, rate limits) → an adapter from ``adapters/`` (the CRM).
"""

__version__ = "0.1.0"
