"""Alembic's entry: runs the migrations on the engine `center.store.migrations.upgrade` passes in."""
from alembic import context

from center.store.tables import metadata

engine = context.config.attributes["engine"]
with engine.begin() as conn:
    context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
    context.run_migrations()
