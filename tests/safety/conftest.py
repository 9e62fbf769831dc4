"""The API tests' fixtures (a served sandbox month), for the red-team tests."""

from tests.api.conftest import served

__all__ = ["served"]
