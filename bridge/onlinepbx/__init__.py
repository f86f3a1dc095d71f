"""onlinePBX API: the client, stable recording links, and recovery of lost webhooks.

``client``: login, key kept in the DB, ``isNotAuth`` re-login, ``status: "0"`` errors.
``links``: HMAC-signed bridge links to recordings. ``recordings``: the route behind them.
``history``: a call-history record as the webhook onlinePBX would have sent.
``reconcile``: the periodic sweep and ``pbx-bridge backfill``.
"""
