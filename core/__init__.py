"""qloop core: canonical records, compliance engine, store and the loop.

``core`` imports nothing from ``api``, ``workers`` or ``connectors``.
"""
