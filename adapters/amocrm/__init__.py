"""amoCRM / Kommo adapter (API v4): see docs/adapters/amocrm.md."""

from adapters.amocrm.adapter import AmoCRMAdapter
from adapters.amocrm.settings import AmoCRMSettings

__all__ = ["AmoCRMAdapter", "AmoCRMSettings"]
