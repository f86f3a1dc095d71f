"""CRM adapters, one same-shaped package per CRM, all built on the SDK in ``bridge.adapter``.

Each ``adapters/<crm>/__init__.py`` holds the package's ``MANIFEST``; pyproject.toml registers
it under the ``pbx_bridge.adapters`` entry-point group, exactly as a third-party adapter
registers. Nothing here lists the CRMs: see docs/ARCHITECTURE.md, "Adding a CRM".
"""
