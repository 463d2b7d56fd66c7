"""Cut one test database off the shared PostgreSQL server and let it back, without stopping the server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from tests.conftest import PG_ADMIN


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


def refuse_connections(url: str) -> None:
    """New connections to the database fail and the open ones are ended: to the daemon, the database is down."""
    name = database_name(url)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> "
                     "pg_backend_pid()", (name,))


def allow_connections(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


@contextmanager
def database_down(url: str) -> Iterator[None]:
    refuse_connections(url)
    try:
        yield
    finally:
        allow_connections(url)
