"""Bitrix24 adapter: telephony.externalCall.* call log, missed calls as to-dos or tasks."""

from .adapter import Bitrix24Adapter
from .settings import Bitrix24Settings

__all__ = ["Bitrix24Adapter", "Bitrix24Settings"]
