"""Alerts to the admin (``[alerts]``): Telegram, e-mail and/or a signed webhook."""

from bridge.alerts.channels import Alert, ChannelError
from bridge.alerts.monitor import Monitor, alerts_ctx, send_test

__all__ = ["Alert", "ChannelError", "Monitor", "alerts_ctx", "send_test"]
