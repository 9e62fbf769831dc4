"""The declarative REST source (``type: rest``): any JSON REST ticketing tool from YAML.

Modules: :mod:`.options` (schema), :mod:`.calls` (configured calls and
their templates), :mod:`.reader` (list, history, counts), :mod:`.tickets`
(write-back), :mod:`.notes` (comments read back), :mod:`.source`. Worked
examples: config/examples/zammad.yaml and config/examples/itop.yaml.
"""

from __future__ import annotations

from connectors.rest.options import OPTIONS_SCHEMA
from connectors.rest.source import RestSource, rest_source
from core.registry import register

register("source", "rest", rest_source, OPTIONS_SCHEMA, mapping="rest")

__all__ = ["OPTIONS_SCHEMA", "RestSource", "rest_source"]
