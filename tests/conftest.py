"""Suite-wide plugins: tests/secret_guard.py fails the run if a test password leaks."""

from tests.secret_guard import pytest_configure

__all__ = ["pytest_configure"]
