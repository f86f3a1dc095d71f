"""``http``: each call log and task POSTed as a signed JSON document (docs/HTTP_ADAPTER.md)."""

from bridge.adapter import Manifest

MANIFEST = Manifest(
    name="http",
    adapter="adapters.http.adapter:HttpAdapter",
    title="HTTP (Standard Webhooks)",
    summary="POSTs a versioned JSON document per call log and task (and call.ringing /"
    " call.answered while a call goes on), signed per Standard Webhooks",
    idempotency_key="webhook-id",  # stable per call and kind: the receiver drops a repeat
    deduplicates=True,
    lists_users=False,
    capabilities=frozenset({"log_call", "create_task", "check", "ringing", "answered"}),
    docs="docs/HTTP_ADAPTER.md",
    fake="adapters.http.fake:HttpReceiver",
    fake_table="adapters.http.fake:reliability_table",
    fake_secrets=("secret",),
)
