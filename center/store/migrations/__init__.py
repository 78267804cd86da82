"""Schema migrations (Alembic): `upgrade(engine)` brings any center database to the newest schema.

The scripts live in versions/. The first one also adopts a ledger.db made before Alembic (its tables
exist, no `alembic_version`): it creates only what is missing. A new script for every change; never edit
one that has shipped. Every Store runs them when it opens (`center.store.Store`); on PostgreSQL under an
advisory lock, so N ledger workers starting together on an empty database migrate it once.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, text

HERE = Path(__file__).resolve().parent


def config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


MIGRATION_LOCK = 0x48435031  # "HCP1": the advisory lock key N processes take around the upgrade


def upgrade(engine: Engine, revision: str = "head") -> None:
    if engine.dialect.name != "postgresql":
        command.upgrade(config(engine), revision)  # SQLite: one writer at a time anyway
        return
    with engine.connect() as lock:
        lock.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK})
        try:
            command.upgrade(config(engine), revision)
        finally:
            lock.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK})


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
