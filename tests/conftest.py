"""Shared fixtures: fixed test-only keys (the vector keys) and small images."""

from __future__ import annotations

import pytest

from svsmlog import crypto
from svsmlog.vectors import vector_key


@pytest.fixture(scope="session")
def owner() -> crypto.PrivateKey:
    return vector_key("owner")


@pytest.fixture(scope="session")
def debug_key() -> crypto.PrivateKey:
    return vector_key("debug")


@pytest.fixture(scope="session")
def owner_pq() -> crypto.PrivateKey:
    return vector_key("owner-pq")
