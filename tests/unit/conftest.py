"""Fixtures for the unit tests (no Docker engine, no Elasticsearch)."""

import logging

import pytest


@pytest.fixture(autouse=True)
def _own_log_handler():
    """`main()` installs its log handler on pytest's captured stream; put the old ones back."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    yield
    root.handlers[:] = handlers
