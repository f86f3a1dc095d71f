"""Receive: the onlinePBX webhook endpoint (parse, authenticate, validate, hand to the store)."""
