"""Deliver: take due jobs from the outbox and run them through their adapter."""
