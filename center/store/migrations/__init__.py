"""Schema migrations (Alembic): `upgrade(engine)` brings any center database to the newest schema.

The scripts live in versions/. The first one also adopts a ledger.db made before Alembic (its tables
exist, no `alembic_version`): it creates only what is missing. A new script for every change; never edit
one that has shipped. `python -m center db upgrade --db URL` runs them by hand.
"""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

HERE = Path(__file__).resolve().parent


def config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    command.upgrade(config(engine), revision)


def current(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
