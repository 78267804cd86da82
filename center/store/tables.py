"""The center's record, as SQLAlchemy Core tables: one definition for SQLite (one hall) and PostgreSQL
(a district). Alembic migrations (center/store/migrations/) create and evolve them; this module is what
the code reads and writes through. Times are epoch seconds (float) unless the column says `ts` (the
record's own ISO 8601 text, kept as sent).

The first six tables are the ledger's (their names and columns are unchanged since the first release,
so reports written against ledger.db keep working); the rest serve the phone channels.
"""
from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text,
                        UniqueConstraint, text)

metadata = MetaData()

# ---- the ledger: records and what the center published ----------------------------------------------

ratings = Table(
    "ratings", metadata,
    Column("id", String(36), primary_key=True),
    Column("center", String(32), nullable=False), Column("window", String(32), nullable=False),
    Column("device", String(32), nullable=False), Column("seq", BigInteger, nullable=False),
    Column("ts", String(40), nullable=False), Column("kind", String(8), nullable=False),
    Column("level", String(24), nullable=False), Column("channel", String(16), nullable=False),
    Column("case_id", String(50)), Column("item_code", String(64)), Column("staff", String(32)),
    Column("applicant", String(128)),
    Column("reasons", Text),            # comma-separated reason codes
    Column("catalog", String(32)),      # the catalog version the reasons come from
    Column("first", Integer, nullable=False),  # 1: the case's first rating (一事一评); 0: a later one, kept
    Column("received", Float, nullable=False),
    Column("flags", Text),              # comma-separated check results, NULL when clean
)
Index("one_first_rating_per_center_case", ratings.c.center, ratings.c.case_id, unique=True,
      sqlite_where=text("first = 1"), postgresql_where=text("first = 1"))
Index("ratings_by_device_seq", ratings.c.center, ratings.c.device, ratings.c.seq)

events = Table(
    "events", metadata,
    Column("id", String(36), primary_key=True),
    Column("center", String(32), nullable=False), Column("window", String(32), nullable=False),
    Column("device", String(32), nullable=False), Column("ts", String(40), nullable=False),
    Column("event", String(16), nullable=False), Column("case_id", String(50)), Column("staff", String(32)),
    Column("applicant", String(128)), Column("received", Float, nullable=False),
    Column("seq", BigInteger), Column("alarm", String(40)), Column("detail", Text),
)

bindings = Table(
    "bindings", metadata,
    Column("center", String(32), primary_key=True), Column("device", String(32), primary_key=True),
    Column("state", String(16), nullable=False), Column("window", String(32)),
    Column("prev_window", String(32)),     # the window before the last move ...
    Column("since", Float, nullable=False),  # ... which took effect at this time
    Column("source", String(16), nullable=False),  # binding | first_use
    Column("updated", Float, nullable=False),
)

cases = Table(
    "cases", metadata,
    Column("center", String(32), primary_key=True), Column("case_id", String(50), primary_key=True),
    Column("window", String(32), nullable=False), Column("staff", String(32)),
    Column("state", String(8), nullable=False),   # open | closed | rated, as last published
    Column("updated", Float, nullable=False),
    # Shown on the phone page (never the applicant's data); filled from the published `case` message.
    Column("item_code", String(64)), Column("item_name", String(64)),
    Column("staff_name", String(32)), Column("staff_number", String(16)),
    Column("applicant", String(128)),      # the opaque applicant token, to build the record
    Column("opened_at", String(40)),
)

# ---- what the center knows about its people, windows and reasons --------------------------------------

windows = Table(
    "windows", metadata,
    Column("center", String(32), primary_key=True), Column("window", String(32), primary_key=True),
    Column("name", String(32)), Column("updated", Float, nullable=False),
)

staff = Table(
    "staff", metadata,
    Column("center", String(32), primary_key=True), Column("staff_id", String(32), primary_key=True),
    Column("name", String(32), nullable=False), Column("number", String(16)),
    Column("window", String(32)), Column("title", String(32)),
    Column("code_gen", Integer, nullable=False, server_default=text("1")),  # bumped to revoke a printed code
    Column("revoked", Integer, nullable=False, server_default=text("0")),   # 1: left; the code is refused
    Column("updated", Float, nullable=False),
)

centers = Table(   # the hall code of each center (大厅评价); revocable like a staff code
    "centers", metadata,
    Column("center", String(32), primary_key=True), Column("name", String(64)),
    Column("code_gen", Integer, nullable=False, server_default=text("1")),
    Column("updated", Float, nullable=False),
)

catalogs = Table(
    "catalogs", metadata,
    Column("center", String(32), primary_key=True), Column("version", String(32), primary_key=True),
    Column("reasons", Text, nullable=False),   # JSON: [{"code", "zh", "group"?}, ...] as published
    Column("updated", Float, nullable=False),  # the newest row per center is the current catalog
)

# ---- the phone channels ------------------------------------------------------------------------------

contacts = Table(   # the applicant's phone number, from the case system; never leaves the center
    "contacts", metadata,
    Column("center", String(32), primary_key=True), Column("case_id", String(50), primary_key=True),
    Column("phone", String(32), nullable=False), Column("created", Float, nullable=False),
)

notes = Table(      # what a phone rating adds beyond the record: text ≤ 500 characters
    "notes", metadata,
    Column("rating_id", String(36), primary_key=True), Column("text", Text, nullable=False),
)

photos = Table(     # up to 3 per phone rating, re-encoded; the file lives outside any served path
    "photos", metadata,
    Column("name", String(64), primary_key=True), Column("rating_id", String(36), nullable=False, index=True),
    Column("bytes", Integer, nullable=False), Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False), Column("created", Float, nullable=False),
)

static_uses = Table(  # each rating made through a static (staff / hall) code: the limits count these
    "static_uses", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),      # staff | hall
    Column("center", String(32), nullable=False), Column("target", String(32), nullable=False),
    Column("client", String(64), nullable=False),   # hash of the phone's cookie
    Column("addr", String(64), nullable=False),     # hash of the client address
    Column("ts", Float, nullable=False),
)
Index("static_uses_by_target", static_uses.c.kind, static_uses.c.center, static_uses.c.target, static_uses.c.ts)

sequences = Table(  # seq of the records the center makes itself (device `center-web`)
    "sequences", metadata,
    Column("center", String(32), primary_key=True), Column("device", String(32), primary_key=True),
    Column("last", BigInteger, nullable=False),
)

# ---- side effects, written in the same transaction as the record and drained by workers ----------------

sms_jobs = Table(
    "sms_jobs", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("center", String(32), nullable=False), Column("case_id", String(50), nullable=False),
    Column("link", String(64), nullable=False),     # the single-use link token (URL-safe); its hash is in sms_links
    Column("due", Float, nullable=False),           # not before (delay and sending hours applied)
    Column("state", String(12), nullable=False),    # pending | sent | failed | cancelled
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_try", Float, nullable=False),
    Column("last_error", Text), Column("provider_id", String(128)),
    Column("created", Float, nullable=False), Column("sent_at", Float),
    UniqueConstraint("center", "case_id", name="one_sms_per_case"),
)
Index("sms_jobs_due", sms_jobs.c.state, sms_jobs.c.next_try)

sms_links = Table(
    "sms_links", metadata,
    Column("hash", String(64), primary_key=True),   # sha256 hex of the link token: the token itself is not kept
    Column("center", String(32), nullable=False), Column("case_id", String(50), nullable=False),
    Column("expires", Float, nullable=False), Column("used_at", Float), Column("created", Float, nullable=False),
)

notices = Table(    # MQTT messages the center owes: `rated` cases (retained), records for the bridge
    "notices", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("topic", String(200), nullable=False), Column("payload", LargeBinary, nullable=False),
    Column("retain", Integer, nullable=False), Column("created", Float, nullable=False),
    Column("sent_at", Float),
)
Index("notices_unsent", notices.c.sent_at, notices.c.id)

# ---- the center's staff and systems (issue 11): sign-in, audit, API keys ------------------------------------

users = Table(
    "users", metadata,
    Column("name", String(32), primary_key=True),
    Column("hash", String(200), nullable=False),          # scrypt (provisioning.users.hash_password)
    Column("role", String(16), nullable=False),           # admin | supervisor | auditor
    Column("windows", Text),                              # comma-separated; NULL = every window
    Column("created", Float, nullable=False),
    Column("disabled", Integer, nullable=False, server_default=text("0")),
)

sessions = Table(
    "sessions", metadata,
    Column("token_hash", String(64), primary_key=True),   # sha256 of the cookie: a copy of the db lets nobody in
    Column("user", String(32), nullable=False), Column("csrf", String(64), nullable=False),
    Column("created", Float, nullable=False), Column("expires", Float, nullable=False),
)

attempts = Table(   # failed sign-ins and pairing-code tries, for the limits
    "attempts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("what", String(16), nullable=False), Column("who", String(128), nullable=False),
    Column("at", Float, nullable=False),
)
Index("attempts_by_who", attempts.c.what, attempts.c.who, attempts.c.at)

audit = Table(
    "audit", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False), Column("who", String(64), nullable=False),
    Column("action", String(32), nullable=False), Column("target", String(128), nullable=False),
    Column("detail", Text, nullable=False, server_default=""),
)

api_keys = Table(   # the case and data APIs' keys: center-wide (windows NULL) or one business system's windows
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("windows", Text),
    Column("created", Float, nullable=False), Column("revoked", Float),
)

# ---- bad-rating follow-up (差评整改, issue 11) ------------------------------------------------------------

followups = Table(  # one per followed-up bad rating; the rating itself stays in `ratings` (never the applicant)
    "followups", metadata,
    Column("rating_id", String(36), primary_key=True),
    Column("center", String(32), nullable=False), Column("window", String(32), nullable=False),
    Column("staff", String(32)), Column("level", String(24), nullable=False),
    Column("channel", String(16), nullable=False),
    Column("opened", Float, nullable=False),
    Column("state", String(12), nullable=False),      # open | contacted | answered | rectified | closed
    Column("due_contact", Float, nullable=False), Column("due_answer", Float, nullable=False),
    Column("due_rectify", Float, nullable=False),
    Column("contacted_at", Float), Column("answered_at", Float), Column("rectified_at", Float),
    Column("closed_at", Float),
    Column("updated", Float, nullable=False), Column("updated_by", String(64), nullable=False),
)
Index("followups_by_window", followups.c.center, followups.c.window, followups.c.state)
Index("followups_by_state", followups.c.state, followups.c.opened)

followup_notes = Table(  # the follow-up's history: every state change and every note, who and when
    "followup_notes", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rating_id", String(36), nullable=False, index=True),
    Column("at", Float, nullable=False), Column("who", String(64), nullable=False),
    Column("action", String(16), nullable=False),     # note | contacted | answered | rectified | closed | reopened
    Column("text", Text, nullable=False, server_default=""),
)

alerts = Table(     # outbox: alerts to a window's supervisors (follow-up opened / overdue), drained by a worker
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(80), nullable=False, unique=True),   # idempotency: fu-<kind>-<clock>-<rating_id>
    Column("kind", String(16), nullable=False),               # opened | overdue
    Column("center", String(32), nullable=False), Column("window", String(32), nullable=False),
    Column("rating_id", String(36), nullable=False),
    Column("body", Text, nullable=False),                     # JSON sent to the gateway (no applicant data)
    Column("state", String(12), nullable=False),              # pending | sent | failed
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_try", Float, nullable=False),
    Column("last_error", Text), Column("provider_id", String(128)),
    Column("created", Float, nullable=False), Column("sent_at", Float),
)
Index("alerts_due", alerts.c.state, alerts.c.next_try)

# ---- delivery to the city (issue 11): the ledger is the source of truth for what the city has -------------

city_delivery = Table(   # one row per rating, written in the same transaction as the rating (Record.accept)
    "city_delivery", metadata,
    Column("rating_id", String(36), primary_key=True),
    Column("center", String(32), nullable=False), Column("device", String(32), nullable=False),
    Column("day", String(10), nullable=False),       # YYYY-MM-DD of the rating's own ts (reconciliation)
    Column("state", String(12), nullable=False),     # pending | offered | receipted | rejected
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_try", Float, nullable=False),       # offered again from then on unless receipted
    Column("offered_at", Float), Column("receipted_at", Float),
    Column("reason", Text),                          # the city's reason for a `rejected`
    Column("created", Float, nullable=False),
)
Index("city_delivery_due", city_delivery.c.state, city_delivery.c.next_try)
Index("city_delivery_by_day", city_delivery.c.day, city_delivery.c.device)

city_records = Table(    # the city stand-in's store (a Store in city mode: tests, the demo); one row per id
    "city_records", metadata,
    Column("id", String(36), primary_key=True),
    Column("center", String(32), nullable=False), Column("device", String(32), nullable=False),
    Column("day", String(10), nullable=False),
    Column("record", Text, nullable=False),          # JSON, GB/T 39046 Table 9 field names, as received
    Column("received", Float, nullable=False),
)
Index("city_records_by_day", city_records.c.day, city_records.c.device)

# Indexes for the data API (keyset pagination by received time, summaries) and the case feed (the last
# message published on a topic).
Index("ratings_by_received", ratings.c.center, ratings.c.received, ratings.c.id)
Index("notices_by_topic", notices.c.topic, notices.c.id)
