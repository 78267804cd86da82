"""devkit.postgres: a real throwaway cluster starts, keeps databases apart, keeps a commit across a crash-like
restart, and leaves nothing behind."""
from __future__ import annotations

import psycopg
import pytest

from devkit.postgres import Postgres


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def pg():
    p = Postgres().start()
    yield p
    p.stop()


def test_start_serves_its_database_and_stop_removes_everything():
    p = Postgres().start()
    try:
        with psycopg.connect(dsn(p.url)) as conn:
            assert conn.execute("select current_database(), inet_server_port()").fetchone() == ("hcp", p.port)
            assert conn.execute("show max_connections").fetchone() == ("200",)
    finally:
        p.stop()
    assert not p.dir.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn(p.url), connect_timeout=2)


def test_two_databases_are_isolated(pg):
    a, b = pg.new_database("alpha"), pg.new_database("beta")
    with psycopg.connect(dsn(a)) as conn:
        conn.execute("create table t (v text)")
        conn.execute("insert into t values ('only in alpha')")
    with psycopg.connect(dsn(b)) as conn:
        assert conn.execute("select count(*) from pg_tables where tablename = 't'").fetchone() == (0,)
    with psycopg.connect(dsn(a)) as conn:
        assert conn.execute("select v from t").fetchall() == [("only in alpha",)]


def test_a_database_name_must_be_plain(pg):
    with pytest.raises(ValueError):
        pg.new_database('x"; drop database hcp; --')


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_commit_survives_a_restart(pg, mode):
    url = pg.new_database("durable")
    with psycopg.connect(dsn(url)) as conn:
        conn.execute("create table t (v int)")
        conn.execute("insert into t values (42)")
    pg.restart(mode)  # immediate: no shutdown checkpoint, the commit comes back from the WAL
    with psycopg.connect(dsn(url)) as conn:
        assert conn.execute("select v from t").fetchall() == [(42,)]
