"""Connector implementations; importing this package registers every built-in type.

Add a new connector type by appending its module to the import below.
"""

from connectors import sandbox  # noqa: F401  (registers on import)
