"""The center's store on both back ends: `store` (and `store_url`) run a test once on a fresh SQLite file
and once on a fresh database in a throwaway PostgreSQL cluster (one cluster per test session, started
only when a PostgreSQL case runs)."""
from __future__ import annotations

import uuid

import pytest

from center.store import Store, sqlite_url
from devkit.postgres import Postgres


@pytest.fixture(scope="session")
def postgres():
    pg = Postgres().start()
    yield pg
    pg.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "center.db")
    return request.getfixturevalue("postgres").new_database(f"t_{uuid.uuid4().hex[:16]}")


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()
