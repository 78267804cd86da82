"""Bad-rating follow-ups and their alerts, delivery to the city (and the city stand-in's records), indexes
for the data API and the case feed (issue 11).

Revision ID: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"

S, F, I, T = sa.String, sa.Float, sa.Integer, sa.Text
ZERO = sa.text("0")


def upgrade() -> None:
    op.create_table("followups", sa.Column("rating_id", S(36), primary_key=True),
                    sa.Column("center", S(32), nullable=False), sa.Column("window", S(32), nullable=False),
                    sa.Column("staff", S(32)), sa.Column("level", S(24), nullable=False),
                    sa.Column("channel", S(16), nullable=False), sa.Column("opened", F, nullable=False),
                    sa.Column("state", S(12), nullable=False),
                    sa.Column("due_contact", F, nullable=False), sa.Column("due_answer", F, nullable=False),
                    sa.Column("due_rectify", F, nullable=False), sa.Column("contacted_at", F),
                    sa.Column("answered_at", F), sa.Column("rectified_at", F), sa.Column("closed_at", F),
                    sa.Column("updated", F, nullable=False), sa.Column("updated_by", S(64), nullable=False))
    op.create_index("followups_by_window", "followups", ["center", "window", "state"])
    op.create_index("followups_by_state", "followups", ["state", "opened"])
    op.create_table("followup_notes", sa.Column("id", I, primary_key=True, autoincrement=True),
                    sa.Column("rating_id", S(36), nullable=False), sa.Column("at", F, nullable=False),
                    sa.Column("who", S(64), nullable=False), sa.Column("action", S(16), nullable=False),
                    sa.Column("text", T, nullable=False, server_default=""))
    op.create_index("ix_followup_notes_rating_id", "followup_notes", ["rating_id"])
    op.create_table("alerts", sa.Column("id", I, primary_key=True, autoincrement=True),
                    sa.Column("key", S(80), nullable=False, unique=True), sa.Column("kind", S(16), nullable=False),
                    sa.Column("center", S(32), nullable=False), sa.Column("window", S(32), nullable=False),
                    sa.Column("rating_id", S(36), nullable=False), sa.Column("body", T, nullable=False),
                    sa.Column("state", S(12), nullable=False),
                    sa.Column("attempts", I, nullable=False, server_default=ZERO),
                    sa.Column("next_try", F, nullable=False), sa.Column("last_error", T),
                    sa.Column("provider_id", S(128)), sa.Column("created", F, nullable=False),
                    sa.Column("sent_at", F))
    op.create_index("alerts_due", "alerts", ["state", "next_try"])
    op.create_table("city_delivery", sa.Column("rating_id", S(36), primary_key=True),
                    sa.Column("center", S(32), nullable=False), sa.Column("device", S(32), nullable=False),
                    sa.Column("day", S(10), nullable=False), sa.Column("state", S(12), nullable=False),
                    sa.Column("attempts", I, nullable=False, server_default=ZERO),
                    sa.Column("next_try", F, nullable=False), sa.Column("offered_at", F),
                    sa.Column("receipted_at", F), sa.Column("reason", T), sa.Column("created", F, nullable=False))
    op.create_index("city_delivery_due", "city_delivery", ["state", "next_try"])
    op.create_index("city_delivery_by_day", "city_delivery", ["day", "device"])
    op.create_table("city_records", sa.Column("id", S(36), primary_key=True),
                    sa.Column("center", S(32), nullable=False), sa.Column("device", S(32), nullable=False),
                    sa.Column("day", S(10), nullable=False), sa.Column("record", T, nullable=False),
                    sa.Column("received", F, nullable=False))
    op.create_index("city_records_by_day", "city_records", ["day", "device"])
    op.create_index("ratings_by_received", "ratings", ["center", "received", "id"])
    op.create_index("notices_by_topic", "notices", ["topic", "id"])


def downgrade() -> None:
    raise NotImplementedError("the record is never migrated backwards")
