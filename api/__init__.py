"""Interfaces: the ``qloop`` command line (and, later, the HTTP API)."""
