"""Fixtures of the fault-injection tests: the SMTP sink of the outbound tests, a PostgreSQL-only database."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from maild.store.db import Database
from tests.outbound.conftest import smtp_sink  # noqa: F401 - the same aiosmtpd peer


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database of its own (outages are cut per database on the shared server)."""
    database = Database(pg_url.replace("postgresql://", "postgresql+psycopg://", 1))
    database.upgrade()
    yield database
    database.dispose()
