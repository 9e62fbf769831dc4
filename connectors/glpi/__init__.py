"""The ``glpi`` source connector (GLPI's legacy REST API, ``apirest.php``).

Importing this package registers the type with :mod:`core.registry`, with
its options schema and its default mapping ``mappings/glpi.yaml``.
"""

from __future__ import annotations

from connectors.glpi.options import OPTIONS_SCHEMA
from connectors.glpi.source import GlpiSource
from core.registry import register

register("source", "glpi", GlpiSource, OPTIONS_SCHEMA, mapping="glpi")

__all__ = ["OPTIONS_SCHEMA", "GlpiSource"]
