"""CRM adapters, one module or package per CRM, all built on ``bridge.adapter``.

``BUILTIN`` is the registry: adding a CRM is one line here (plus its module and tests).
Third-party adapters register under the ``pbx_bridge.adapters`` entry-point group instead.
"""

BUILTIN: dict[str, str] = {
    "local": "adapters.local:LocalAdapter",
    "http": "adapters.webhook:HttpAdapter",
    "amocrm": "adapters.amocrm:AmoCRMAdapter",
    "kommo": "adapters.amocrm:AmoCRMAdapter",
    "bitrix24": "adapters.bitrix24:Bitrix24Adapter",
    "hubspot": "adapters.hubspot:HubSpotAdapter",
    "pipedrive": "adapters.pipedrive:PipedriveAdapter",
    "zoho": "adapters.zoho:ZohoAdapter",
}
