"""The phone channels: case details for the phone page, staff and hall codes, catalogs, contacts, notes,
photos, static-code uses, the center's own sequences, SMS jobs and links, MQTT notices.

Revision ID: 0002
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"

S = sa.String
ONE, ZERO = sa.text("1"), sa.text("0")


def upgrade() -> None:
    with op.batch_alter_table("cases") as b:
        for name, kind in (("item_code", S(64)), ("item_name", S(64)), ("staff_name", S(32)),
                           ("staff_number", S(16)), ("applicant", S(128)), ("opened_at", S(40))):
            b.add_column(sa.Column(name, kind))
    op.create_table("windows", sa.Column("center", S(32), primary_key=True),
                    sa.Column("window", S(32), primary_key=True), sa.Column("name", S(32)),
                    sa.Column("updated", sa.Float, nullable=False))
    op.create_table("staff", sa.Column("center", S(32), primary_key=True),
                    sa.Column("staff_id", S(32), primary_key=True), sa.Column("name", S(32), nullable=False),
                    sa.Column("number", S(16)), sa.Column("window", S(32)), sa.Column("title", S(32)),
                    sa.Column("code_gen", sa.Integer, nullable=False, server_default=ONE),
                    sa.Column("revoked", sa.Integer, nullable=False, server_default=ZERO),
                    sa.Column("updated", sa.Float, nullable=False))
    op.create_table("centers", sa.Column("center", S(32), primary_key=True), sa.Column("name", S(64)),
                    sa.Column("code_gen", sa.Integer, nullable=False, server_default=ONE),
                    sa.Column("updated", sa.Float, nullable=False))
    op.create_table("catalogs", sa.Column("center", S(32), primary_key=True),
                    sa.Column("version", S(32), primary_key=True), sa.Column("reasons", sa.Text, nullable=False),
                    sa.Column("updated", sa.Float, nullable=False))
    op.create_table("contacts", sa.Column("center", S(32), primary_key=True),
                    sa.Column("case_id", S(50), primary_key=True), sa.Column("phone", S(32), nullable=False),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_table("notes", sa.Column("rating_id", S(36), primary_key=True),
                    sa.Column("text", sa.Text, nullable=False))
    op.create_table("photos", sa.Column("name", S(64), primary_key=True),
                    sa.Column("rating_id", S(36), nullable=False), sa.Column("bytes", sa.Integer, nullable=False),
                    sa.Column("width", sa.Integer, nullable=False), sa.Column("height", sa.Integer, nullable=False),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_index("ix_photos_rating_id", "photos", ["rating_id"])
    op.create_table("static_uses", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("kind", S(8), nullable=False), sa.Column("center", S(32), nullable=False),
                    sa.Column("target", S(32), nullable=False), sa.Column("client", S(64), nullable=False),
                    sa.Column("addr", S(64), nullable=False), sa.Column("ts", sa.Float, nullable=False))
    op.create_index("static_uses_by_target", "static_uses", ["kind", "center", "target", "ts"])
    op.create_table("sequences", sa.Column("center", S(32), primary_key=True),
                    sa.Column("device", S(32), primary_key=True), sa.Column("last", sa.BigInteger, nullable=False))
    op.create_table("sms_jobs", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("center", S(32), nullable=False), sa.Column("case_id", S(50), nullable=False),
                    sa.Column("link", S(64), nullable=False), sa.Column("due", sa.Float, nullable=False),
                    sa.Column("state", S(12), nullable=False),
                    sa.Column("attempts", sa.Integer, nullable=False, server_default=ZERO),
                    sa.Column("next_try", sa.Float, nullable=False), sa.Column("last_error", sa.Text),
                    sa.Column("provider_id", S(128)), sa.Column("created", sa.Float, nullable=False),
                    sa.Column("sent_at", sa.Float),
                    sa.UniqueConstraint("center", "case_id", name="one_sms_per_case"))
    op.create_index("sms_jobs_due", "sms_jobs", ["state", "next_try"])
    op.create_table("sms_links", sa.Column("hash", S(64), primary_key=True),
                    sa.Column("center", S(32), nullable=False), sa.Column("case_id", S(50), nullable=False),
                    sa.Column("expires", sa.Float, nullable=False), sa.Column("used_at", sa.Float),
                    sa.Column("created", sa.Float, nullable=False))
    op.create_table("notices", sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
                    sa.Column("topic", S(200), nullable=False), sa.Column("payload", sa.LargeBinary, nullable=False),
                    sa.Column("retain", sa.Integer, nullable=False), sa.Column("created", sa.Float, nullable=False),
                    sa.Column("sent_at", sa.Float))
    op.create_index("notices_unsent", "notices", ["sent_at", "id"])


def downgrade() -> None:
    raise NotImplementedError("the record is never migrated backwards")
