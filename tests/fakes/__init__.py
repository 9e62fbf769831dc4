"""Local fake servers of the external APIs qloop integrates, built from their references.

Each fake is an ASGI app (Starlette) holding its data in memory; tests and
benchmarks serve it on 127.0.0.1 with :func:`tests.fakes.server.serve`.
"""
