"""Staff sign-in, audit and API keys on the center store (issue 11).

Revision ID: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"

S = sa.String


def upgrade() -> None:
    op.create_table("users", sa.Column("name", S(32), primary_key=True), sa.Column("hash", S(200), nullable=False),
                    sa.Column("role", S(16), nullable=False), sa.Column("windows", sa.Text),
                    sa.Column("created", sa.Float, nullable=False),
                    sa.Column("disabled", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.create_table("sessions", sa.Column("token_hash", S(64), primary_key=True),
                    sa.Column("user", S(32), nullable=False), sa.Column("csrf", S(64), nullable=False),
                    sa.Column("created", sa.Float, nullable=False), sa.Column("expires", sa.Float, nullable=False))
    op.create_table("attempts", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("what", S(16), nullable=False), sa.Column("who", S(128), nullable=False),
                    sa.Column("at", sa.Float, nullable=False))
    op.create_index("attempts_by_who", "attempts", ["what", "who", "at"])
    op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("at", sa.Float, nullable=False), sa.Column("who", S(64), nullable=False),
                    sa.Column("action", S(32), nullable=False), sa.Column("target", S(128), nullable=False),
                    sa.Column("detail", sa.Text, nullable=False, server_default=""))
    op.create_table("api_keys", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("name", S(32), nullable=False, unique=True),
                    sa.Column("key_hash", S(64), nullable=False, unique=True), sa.Column("windows", sa.Text),
                    sa.Column("created", sa.Float, nullable=False), sa.Column("revoked", sa.Float))


def downgrade() -> None:
    raise NotImplementedError("the record is never migrated backwards")
