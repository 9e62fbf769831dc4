"""The API tests' fixtures (a served sandbox month), for the red-team tests."""

from tests.api.conftest import _restore_registry, served

__all__ = ["_restore_registry", "served"]
