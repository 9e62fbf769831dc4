"""ServiceNow source (``type: servicenow``), on the source kit.

Modules: :mod:`.options` (schema), :mod:`.reader` (keyset pages,
deletions, bulk enrichment), :mod:`.tickets` (write-back), :mod:`.source`.
"""

from __future__ import annotations

from connectors.servicenow.options import OPTIONS_SCHEMA
from connectors.servicenow.source import ServiceNowSource
from core.registry import register

register("source", "servicenow", ServiceNowSource, OPTIONS_SCHEMA, mapping="servicenow")

__all__ = ["OPTIONS_SCHEMA", "ServiceNowSource"]
