"""The ledger's tables (ratings, events, bindings, cases) and their indexes.

Adopts a ledger.db made before Alembic: what exists is kept, missing tables, columns and indexes are added.

Revision ID: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None

LATER_COLUMNS = {"ratings": [sa.Column("flags", sa.Text)],
                 "events": [sa.Column("seq", sa.BigInteger), sa.Column("alarm", sa.String(40)),
                            sa.Column("detail", sa.Text)]}


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    have = set(insp.get_table_names())
    if "ratings" not in have:
        op.create_table(
            "ratings",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("center", sa.String(32), nullable=False), sa.Column("window", sa.String(32), nullable=False),
            sa.Column("device", sa.String(32), nullable=False), sa.Column("seq", sa.BigInteger, nullable=False),
            sa.Column("ts", sa.String(40), nullable=False), sa.Column("kind", sa.String(8), nullable=False),
            sa.Column("level", sa.String(24), nullable=False), sa.Column("channel", sa.String(16), nullable=False),
            sa.Column("case_id", sa.String(50)), sa.Column("item_code", sa.String(64)),
            sa.Column("staff", sa.String(32)), sa.Column("applicant", sa.String(128)),
            sa.Column("reasons", sa.Text), sa.Column("catalog", sa.String(32)),
            sa.Column("first", sa.Integer, nullable=False), sa.Column("received", sa.Float, nullable=False),
            sa.Column("flags", sa.Text))
    if "events" not in have:
        op.create_table(
            "events",
            sa.Column("id", sa.String(36), primary_key=True),
            sa.Column("center", sa.String(32), nullable=False), sa.Column("window", sa.String(32), nullable=False),
            sa.Column("device", sa.String(32), nullable=False), sa.Column("ts", sa.String(40), nullable=False),
            sa.Column("event", sa.String(16), nullable=False), sa.Column("case_id", sa.String(50)),
            sa.Column("staff", sa.String(32)), sa.Column("applicant", sa.String(128)),
            sa.Column("received", sa.Float, nullable=False), sa.Column("seq", sa.BigInteger),
            sa.Column("alarm", sa.String(40)), sa.Column("detail", sa.Text))
    if "bindings" not in have:
        op.create_table(
            "bindings",
            sa.Column("center", sa.String(32), primary_key=True), sa.Column("device", sa.String(32), primary_key=True),
            sa.Column("state", sa.String(16), nullable=False), sa.Column("window", sa.String(32)),
            sa.Column("prev_window", sa.String(32)), sa.Column("since", sa.Float, nullable=False),
            sa.Column("source", sa.String(16), nullable=False), sa.Column("updated", sa.Float, nullable=False))
    if "cases" not in have:
        op.create_table(
            "cases",
            sa.Column("center", sa.String(32), primary_key=True), sa.Column("case_id", sa.String(50), primary_key=True),
            sa.Column("window", sa.String(32), nullable=False), sa.Column("staff", sa.String(32)),
            sa.Column("state", sa.String(8), nullable=False), sa.Column("updated", sa.Float, nullable=False))
    for table, columns in LATER_COLUMNS.items():  # a ledger.db from before these columns
        present = {c["name"] for c in insp.get_columns(table)} if table in have else {c.name for c in columns}
        for column in columns:
            if column.name not in present:
                op.add_column(table, column)
    indexes = {i["name"] for i in insp.get_indexes("ratings")} if "ratings" in have else set()
    if "one_first_rating_per_case" in indexes:  # the first release's index ignored the center
        op.drop_index("one_first_rating_per_case", "ratings")
    if "one_first_rating_per_center_case" not in indexes:
        op.create_index("one_first_rating_per_center_case", "ratings", ["center", "case_id"], unique=True,
                        sqlite_where=sa.text("first = 1"), postgresql_where=sa.text("first = 1"))
    if "ratings_by_device_seq" not in indexes:
        op.create_index("ratings_by_device_seq", "ratings", ["center", "device", "seq"])


def downgrade() -> None:
    raise NotImplementedError("the record is never migrated backwards")
