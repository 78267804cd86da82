"""A minimal center ledger: the system of record that closes the loop for the terminals.

Subscribes to every device's ratings and events, stores each record once (keyed by its id; one
first rating per case and center), commits, and only then publishes receipts to the device that
sent it. It also follows the bindings (provisioning) and the cases (the case system) as published on
the broker, and checks every rating against them: a rating for another window's case is kept,
flagged and alarmed, and never counts as the case's first rating.

`python -m center.ledger --center-file center.toml` runs it as the center file says (or `--port 1883 --db
ledger.db`); `python -m center.ledger gaps --db ledger.db` lists each device's missing sequence numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import queue
import re
import signal
import sqlite3
import sys
import threading
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from protocol import codec, topics
from provisioning import config as center_config
from protocol.codec import MessageError
from protocol.topics import parse_device_topic
from protocol.transport import backoff, no_delay

log = logging.getLogger("ledger")

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS ratings (
    id TEXT PRIMARY KEY, center TEXT NOT NULL, window TEXT NOT NULL, device TEXT NOT NULL,
    seq INTEGER NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL, level TEXT NOT NULL, channel TEXT NOT NULL,
    case_id TEXT, item_code TEXT, staff TEXT, applicant TEXT, reasons TEXT, catalog TEXT,
    first INTEGER NOT NULL,            -- 1: the case's first rating (一事一评); 0: a later one, kept, flagged
    received REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, center TEXT NOT NULL, window TEXT NOT NULL, device TEXT NOT NULL,
    ts TEXT NOT NULL, event TEXT NOT NULL, case_id TEXT, staff TEXT, applicant TEXT, received REAL NOT NULL
);
-- What the center published: each device's binding (provisioning, or pinned on first use) and each case.
CREATE TABLE IF NOT EXISTS bindings (
    center TEXT NOT NULL, device TEXT NOT NULL, state TEXT NOT NULL, window TEXT,
    prev_window TEXT,                  -- the window before the last move ...
    since REAL NOT NULL,               -- ... which took effect at this time (epoch seconds)
    source TEXT NOT NULL,              -- binding | first_use
    updated REAL NOT NULL,
    PRIMARY KEY (center, device)
);
CREATE TABLE IF NOT EXISTS cases (
    center TEXT NOT NULL, case_id TEXT NOT NULL, window TEXT NOT NULL, staff TEXT, state TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (center, case_id)
);
"""
# Columns added after the first release: an existing ledger.db gets them on open.
MIGRATIONS = {"ratings": [("flags", "TEXT")],   # comma-separated check results, NULL when clean
              "events": [("seq", "INTEGER"), ("alarm", "TEXT"), ("detail", "TEXT")]}
INDEXES = """
DROP INDEX IF EXISTS one_first_rating_per_case;
CREATE UNIQUE INDEX IF NOT EXISTS one_first_rating_per_center_case ON ratings(center, case_id) WHERE first = 1;
CREATE INDEX IF NOT EXISTS ratings_by_device_seq ON ratings(center, device, seq);
"""
BATCH = 1000
BATCH_ATTEMPTS = 3  # a batch the database refuses (busy, I/O) is tried again before it is given up
SUBACK_TIMEOUT_S = 10
WINDOW_TOPIC = re.compile(rf"{re.escape(topics.PREFIX)}/([A-Za-z0-9_-]{{1,32}})/window/([A-Za-z0-9_-]{{1,32}})/case")
# Flags that only say where a check's footing came from; every other flag is an alarm.
INFORMATIVE_FLAGS = {"unbound"}
# SQLite errors that belong to one record (a constraint, a value it cannot hold); any other means the
# database itself is in trouble.
RECORD_ERRORS = (sqlite3.IntegrityError, sqlite3.DataError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


class LedgerError(RuntimeError):
    """The ledger cannot do its job (subscription refused, a worker thread died): stop, exit non-zero."""


class _Throttle:
    """At most one log line per key every `every` seconds; says how many were left out."""

    def __init__(self, every: float = 30):
        self.every = every
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, key: str, level: int, fmt: str, *args) -> None:
        now = time.monotonic()
        last, skipped = self._last.get(key, (-1e9, 0))
        if now - last < self.every:
            self._last[key] = (last, skipped + 1)
            return
        self._last[key] = (now, 0)
        log.log(level, fmt + (f" ({skipped} more like this not logged)" if skipped else ""), *args)


class Ledger:
    def __init__(self, db_path: str | Path, host: str = "127.0.0.1", port: int = 1883, center: str = "+",
                 client_id: str = "center-ledger", username: str = "", password: str = "",
                 mqtt_version: str = "5"):
        if mqtt_version not in ("5", "3.1.1"):
            raise ValueError(f"mqtt_version must be '5' or '3.1.1', not {mqtt_version!r}")
        self.db_path = Path(db_path)
        self.db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        self.db.executescript(SCHEMA)
        _migrate(self.db)
        self.db.executescript(INDEXES)
        self.db.execute("PRAGMA synchronous=FULL")
        self.host, self.port, self.mqtt_version = host, port, mqtt_version
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._stop = threading.Event()
        self._throttle = _Throttle()
        self.stored = 0      # ratings stored (not duplicates)
        self.rejected = 0    # records refused with a `rejected` receipt, or without one when they had no id
        self.failed = 0      # records refused because storing them failed (a ledger bug or bad data)
        self.flagged = 0     # ratings kept with an alarm flag (window/case mismatch, unknown case)
        self.bad_topic = 0   # messages on topics the ledger cannot parse
        self.fatal: str | None = None
        self.topics = [f"{topics.PREFIX}/{center}/device/+/{leaf}" for leaf in ("rating", "event", "binding")]
        self.topics.append(f"{topics.PREFIX}/{center}/window/+/case")
        v5 = mqtt_version == "5"
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
                        clean_session=None if v5 else False, reconnect_on_failure=False)
        if username:
            c.username_pw_set(username, password)
        c.max_inflight_messages_set(1000)
        c.on_socket_open = no_delay
        c.suppress_exceptions = True
        c.on_connect = self._connected
        c.on_disconnect = self._disconnected
        c.on_subscribe = self._subacked
        c.on_message = lambda cl, ud, m: self._q.put((m.topic, m.payload))
        self.client = c
        self.subscribed = threading.Event()
        self._connected_at: float | None = None
        self._attempt = 0
        self._net = threading.Thread(target=self._net_loop, name="ledger-net", daemon=True)
        self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)

    # ---- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "Ledger":
        """Connect (retrying while the broker is unreachable) and subscribe; LedgerError if refused."""
        self._writer.start()
        self._net.start()
        while not self.subscribed.wait(0.1):
            problem = self.health()
            if problem:
                self.stop()
                raise LedgerError(problem)
            if self._stop.is_set():
                break
        return self

    def health(self) -> str | None:
        """None while the ledger works; else why it cannot (the caller stops and exits non-zero)."""
        if self.fatal:
            return self.fatal
        if not self._stop.is_set():
            for t in (self._writer, self._net):
                if t.ident is not None and not t.is_alive():
                    return f"the {t.name} thread died; nothing would be stored"
        at = self._connected_at
        if at is not None and not self.subscribed.is_set() and time.monotonic() - at > SUBACK_TIMEOUT_S:
            return (f"the broker at {self.host}:{self.port} did not answer the ledger's subscription within "
                    f"{SUBACK_TIMEOUT_S} s: nothing would be stored")
        return None

    def stop(self) -> None:
        self._stop.set()
        if self._writer.ident is not None:
            self._writer.join(timeout=5)  # the batch in hand is committed and receipted first
        self.client.disconnect()
        if self._net.ident is not None:
            self._net.join(timeout=5)
        self.db.close()

    def counts(self) -> dict[str, int]:
        return {"stored": self.stored, "rejected": self.rejected, "failed": self.failed,
                "flagged": self.flagged, "bad_topic": self.bad_topic}

    # ---- the network thread ---------------------------------------------------------------------

    def _net_loop(self) -> None:
        try:
            self._run_sessions()
        except BaseException as e:  # noqa: BLE001 - without the network thread nothing arrives: stop loudly
            self.fatal = f"the ledger-net thread died: {e!r}"
            log.critical("%s", self.fatal, exc_info=True)

    def _run_sessions(self) -> None:
        """Connect, run the session until it drops, reconnect with backoff; log each failure with its cause."""
        self._attempt = 0
        while not self._stop.is_set():
            try:
                if self.mqtt_version == "5":
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = 7 * 86400  # receive what arrived while the ledger was down
                    self.client.connect(self.host, self.port, keepalive=30, clean_start=False, properties=props)
                else:
                    self.client.connect(self.host, self.port, keepalive=30)
            except (OSError, ValueError) as e:
                self._attempt += 1
                self._throttle("connect", logging.WARNING, "cannot reach the broker at %s:%d: %s (attempt %d; "
                               "retrying)", self.host, self.port, _cause(e), self._attempt)
                self._stop.wait(backoff(self._attempt, 0.5, 10))
                continue
            self.client.loop_forever()  # returns when the connection is lost (reconnect_on_failure=False)
            self._connected_at = None
            if not self._stop.is_set():
                self._attempt += 1
                self._stop.wait(backoff(self._attempt, 0.5, 10))

    def _connected(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            self._throttle("refused", logging.ERROR, "the broker at %s:%d refused the connection: %s",
                           self.host, self.port, reason)
            return
        log.info("connected to %s:%d (MQTT %s, session present: %s)", self.host, self.port, self.mqtt_version,
                 flags.session_present)
        self.subscribed.clear()
        self._attempt = 0
        self._connected_at = time.monotonic()
        client.subscribe([(t, 1) for t in self.topics])

    def _disconnected(self, client, userdata, flags, reason, properties) -> None:
        if not self._stop.is_set():
            why = "connection lost" if reason.value in (0, 0x80) else str(reason)  # paho's "Unspecified error"
            log.warning("lost the broker at %s:%d: %s; reconnecting", self.host, self.port, why)

    def _subacked(self, client, userdata, mid, reason_codes, properties) -> None:
        refused = [f"{t} ({rc})" for t, rc in zip(self.topics, reason_codes) if rc.is_failure]
        if len(reason_codes) != len(self.topics):
            refused.append(f"{len(reason_codes)} answers for {len(self.topics)} subscriptions")
        if refused:
            self.fatal = (f"the broker at {self.host}:{self.port} refused the ledger's subscription to "
                          f"{', '.join(refused)}: check the ledger account's ACL and --center; nothing would be "
                          f"stored")
            log.critical("%s", self.fatal)
            return
        log.info("subscribed to %s", ", ".join(self.topics))
        self.subscribed.set()

    # ---- the writer thread ----------------------------------------------------------------------

    def _write_loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    batch = [self._q.get(timeout=0.2)]
                except queue.Empty:
                    continue
                while len(batch) < BATCH:
                    try:
                        batch.append(self._q.get_nowait())
                    except queue.Empty:
                        break
                for attempt in range(BATCH_ATTEMPTS):
                    try:
                        self._store(batch)
                        break
                    except sqlite3.Error as e:
                        if self.db.in_transaction:
                            self.db.execute("ROLLBACK")
                        if attempt + 1 == BATCH_ATTEMPTS:
                            log.exception("could not store a batch of %d; no receipts sent, the terminals will "
                                          "offer again", len(batch))
                            # Retained bindings and cases come again with a new SUBSCRIBE.
                            self.client.subscribe([(t, 1) for t in self.topics])
                        else:
                            log.warning("could not store a batch of %d (%s); trying again", len(batch), e)
                            self._stop.wait(0.5)
        except BaseException as e:  # noqa: BLE001 - a dead writer must stop the process, not idle silently
            self.fatal = f"the ledger-writer thread died: {e!r}"
            log.critical("%s", self.fatal, exc_info=True)

    def _store(self, batch: list[tuple[str, bytes]]) -> None:
        counts = self.counts()
        try:
            self._store_batch(batch)
        except sqlite3.Error:
            for name, value in counts.items():  # rolled back: nothing of it happened
                setattr(self, name, value)
            raise

    def _store_batch(self, batch: list[tuple[str, bytes]]) -> None:
        receipts: dict[str, list[dict]] = defaultdict(list)
        now = time.time()
        self.db.execute("BEGIN IMMEDIATE")
        for topic, payload in batch:
            self.db.execute("SAVEPOINT record")
            try:
                reply, item = self._one(topic, payload, now)
            except Exception as e:  # noqa: BLE001 - one record must never stop the others
                if isinstance(e, sqlite3.Error) and not isinstance(e, RECORD_ERRORS):
                    raise  # the database itself (disk full, I/O): the whole batch waits for a re-offer
                self.db.execute("ROLLBACK TO record")
                self.failed += 1
                log.exception("could not store a message on %r; refused it", topic[:200])
                reply, item = self._refusal(topic, payload, f"ledger_error: {type(e).__name__}: {e}")
            self.db.execute("RELEASE record")
            if reply and item:
                receipts[reply].append(item)
        self.db.execute("COMMIT")  # durable first, receipts after
        for topic, items in receipts.items():
            for chunk in receipt_chunks(items):
                self.client.publish(topic, chunk, qos=1)

    def _one(self, topic: str, payload: bytes, now: float) -> tuple[str | None, dict | None]:
        """Store one message; (receipt topic, receipt item) for records."""
        where = parse_device_topic(topic)
        if where is None:
            m = WINDOW_TOPIC.fullmatch(topic)
            if m:
                self._case(m.group(1), m.group(2), payload, now)
            else:
                self.bad_topic += 1
                self._throttle("topic", logging.WARNING, "ignored a message on a topic the ledger cannot parse: %r",
                               topic[:200])
            return None, None
        center, device, leaf = where
        if leaf == "binding":
            self._binding(center, device, payload, now)
            return None, None
        if leaf not in ("rating", "event"):
            self.bad_topic += 1
            self._throttle("topic", logging.WARNING, "ignored a message on %r: not a record", topic[:200])
            return None, None
        try:
            msg = codec.decode(leaf, payload)
            if msg["device"] != device or msg["center"] != center:
                raise MessageError("impersonation", f"topic says {center}/{device}, payload says "
                                                    f"{msg['center']}/{msg['device']}")
        except MessageError as e:
            return self._refusal(topic, payload, str(e))
        reply = f"{topics.PREFIX}/{center}/device/{device}/receipt"
        status = self._insert_rating(msg, now) if leaf == "rating" else self._insert_event(msg, now)
        return reply, {"id": msg["id"], "status": status}

    def _refusal(self, topic: str, payload: bytes, reason: str) -> tuple[str | None, dict | None]:
        self.rejected += 1
        where = parse_device_topic(topic)
        log.warning("rejected a message on %r: %s", topic[:200], reason[:200])
        rid = _id_of(payload)
        if where is None or rid is None:
            return None, None
        return (f"{topics.PREFIX}/{where[0]}/device/{where[1]}/receipt",
                {"id": rid, "status": "rejected", "reason": reason[:200]})

    # ---- what the center published --------------------------------------------------------------

    def _binding(self, center: str, device: str, payload: bytes, now: float) -> None:
        b = _published("binding", payload, center=center, device=device)
        if b is None:
            return  # refused, or a cleared retained binding: keep the last one known
        old = self.db.execute("SELECT window FROM bindings WHERE center=? AND device=?", (center, device)).fetchone()
        window = b.get("window") or (old[0] if old else None)
        moved = old is not None and old[0] is not None and old[0] != window
        since = _epoch(b.get("issued")) or now
        self.db.execute(
            "INSERT INTO bindings (center, device, state, window, prev_window, since, source, updated) "
            "VALUES (?,?,?,?,NULL,?,'binding',?) ON CONFLICT (center, device) DO UPDATE SET state=excluded.state, "
            "window=excluded.window, source='binding', updated=excluded.updated, "
            "prev_window=CASE WHEN ? THEN ? ELSE prev_window END, since=CASE WHEN ? THEN excluded.since ELSE since END",
            (center, device, b["state"], window, since, now, moved, old[0] if old else None, moved))
        log.info("binding of %s/%s: %s at %s", center, device, b["state"], window)

    def _case(self, center: str, window: str, payload: bytes, now: float) -> None:
        c = _published("case", payload, center=center, window=window)
        if c is None:
            return  # refused, or a cleared retained case: what the ledger learned stays
        staff = (c.get("staff") or {}).get("id")
        self.db.execute(
            "INSERT INTO cases VALUES (?,?,?,?,?,?) ON CONFLICT (center, case_id) DO UPDATE SET "
            "window=excluded.window, staff=coalesce(excluded.staff, staff), state=excluded.state, "
            "updated=excluded.updated", (center, c["case"]["id"], window, staff, c["state"], now))

    def _check(self, m: dict, now: float) -> list[str]:
        """How a rating agrees with the device's binding and the case as published (docs/protocol.md §7)."""
        flags: list[str] = []
        center, device, window = m["center"], m["device"], m["window"]
        b = self.db.execute("SELECT state, window, prev_window, since, source FROM bindings "
                            "WHERE center=? AND device=?", (center, device)).fetchone()
        if b is None:  # no provisioning: pin the window of the device's first rating
            self.db.execute("INSERT INTO bindings VALUES (?,?,'pinned',?,NULL,?,'first_use',?)",
                            (center, device, window, now, now))
            log.info("no binding known for %s/%s: pinned it to window %s (its first rating)", center, device, window)
            flags.append("unbound")
        else:
            state, bound, prev, since, source = b
            if source == "first_use":
                flags.append("unbound")
            if state == "revoked":
                flags.append("device_revoked")
            elif window != bound and not (window == prev and (_epoch(m["ts"]) or now) < since):
                flags.append("window_mismatch")
        if m["kind"] == "case":
            c = self.db.execute("SELECT window, staff FROM cases WHERE center=? AND case_id=?",
                                (center, m["case"])).fetchone()
            if c is None:
                flags.append("unknown_case")
            else:
                if c[0] != window:
                    flags.append("case_window_mismatch")
                if c[1] is not None and c[1] != m.get("staff"):
                    flags.append("case_staff_mismatch")
        return flags

    # ---- records --------------------------------------------------------------------------------

    def _insert_rating(self, m: dict, now: float) -> str:
        if self.db.execute("SELECT 1 FROM ratings WHERE id=?", (m["id"],)).fetchone():
            return "duplicate"
        flags = self._check(m, now)
        alarms = [f for f in flags if f not in INFORMATIVE_FLAGS]
        first = m.get("case") is not None and not alarms and self.db.execute(
            "SELECT 1 FROM ratings WHERE center=? AND case_id=? AND first=1", (m["center"], m["case"])).fetchone() is None
        reasons = m.get("reasons", {})
        self.db.execute(
            "INSERT INTO ratings (id, center, window, device, seq, ts, kind, level, channel, case_id, item_code, staff, "
            "applicant, reasons, catalog, first, received, flags) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m["id"], m["center"], m["window"], m["device"], m["seq"], m["ts"], m["kind"], m["level"],
             m["channel"], m.get("case"), m.get("item_code"), m.get("staff"), m.get("applicant"),
             ",".join(reasons.get("codes", [])) or None, reasons.get("catalog"), int(first), now,
             ",".join(flags) or None))
        self.stored += 1
        if alarms:
            self.flagged += 1
            log.warning("ALARM rating %s from %s/%s at %s (case %s, staff %s) kept but flagged: %s", m["id"],
                        m["center"], m["device"], m["window"], m.get("case"), m.get("staff"), ",".join(alarms))
        return "stored"

    def _insert_event(self, m: dict, now: float) -> str:
        n = self.db.execute(
            "INSERT OR IGNORE INTO events (id, center, window, device, ts, event, case_id, staff, applicant, received, "
            "seq, alarm, detail) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (m["id"], m["center"], m["window"], m["device"], m["ts"], m["event"], m.get("case"), m.get("staff"),
             m.get("applicant"), now, m.get("seq"), m.get("alarm"), m.get("detail"))).rowcount
        return "stored" if n else "duplicate"


RECEIPT_BUDGET = 12_000  # bytes: well inside the terminals' 16 KiB inbound limit
RECEIPT_MAX_ITEMS = 250  # the schema's maxItems


def receipt_chunks(items: list[dict]) -> list[bytes]:
    """Encoded receipt messages, each under RECEIPT_BUDGET bytes and RECEIPT_MAX_ITEMS items."""
    out: list[bytes] = []
    batch: list[dict] = []
    size = 40  # the envelope
    for item in items:
        n = len(codec.encode(item)) + 1
        if batch and (size + n > RECEIPT_BUDGET or len(batch) >= RECEIPT_MAX_ITEMS):
            out.append(codec.encode({"v": 1, "type": "receipt", "items": batch}))
            batch, size = [], 40
        batch.append(item)
        size += n
    if batch:
        out.append(codec.encode({"v": 1, "type": "receipt", "items": batch}))
    return out


def query(db_path: str | Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the ledger from another connection (tests, reports) while the service writes."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def gaps(db_path: str | Path) -> dict[tuple[str, str], list[tuple[int, int]]]:
    """Each device's missing sequence ranges (inclusive), from 1 to the highest seq the ledger holds.

    Ratings and `unrated` events share a terminal's sequence (its outbox); alarms carry none. A gap is a
    record the terminal numbered but the ledger never stored: not delivered yet, or lost."""
    rows = query(db_path, "SELECT center, device, seq FROM ratings UNION "
                          "SELECT center, device, seq FROM events WHERE seq IS NOT NULL ORDER BY 1, 2, 3")
    out: dict[tuple[str, str], list[tuple[int, int]]] = {}
    last: dict[tuple[str, str], int] = {}
    for center, device, seq in rows:
        key = (center, device)
        ranges = out.setdefault(key, [])
        if seq > last.get(key, 0) + 1:
            ranges.append((last.get(key, 0) + 1, seq - 1))
        last[key] = seq
    return out


def _migrate(db: sqlite3.Connection) -> None:
    for table, columns in MIGRATIONS.items():
        have = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def _epoch(ts: str | None) -> float | None:
    try:
        return datetime.fromisoformat(ts).timestamp() if ts else None
    except ValueError:
        return None


def _cause(e: BaseException) -> str:
    """An exception in words an operator can act on."""
    if isinstance(e, ConnectionRefusedError):
        return "connection refused (is the broker running on that port?)"
    if isinstance(e, TimeoutError):
        return "timed out"
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


def _published(kind: str, payload: bytes, **topic: str) -> dict | None:
    """A center message decoded and checked against the ids its topic names; None (logged) if refused,
    None (silently) for an empty payload: a cleared retained message."""
    if not payload:
        return None
    try:
        msg = codec.decode(kind, payload)
        wrong = [k for k, v in topic.items() if msg.get(k) != v]
        if wrong:
            raise MessageError("wrong_topic", f"the {kind} names another {'/'.join(wrong)} than its topic")
        return msg
    except MessageError as e:
        log.warning("ignored a %s on %s: %s", kind, "/".join(topic.values()), e)
        return None


def _id_of(payload: bytes) -> str | None:
    """Best effort: the id of a record we refuse, so its sender can quarantine it."""
    try:
        rid = json.loads(payload).get("id")
    except (ValueError, AttributeError, UnicodeDecodeError, RecursionError):
        return None
    return rid if isinstance(rid, str) and re.fullmatch(r"[0-9a-f-]{36}", rid) else None


def gaps_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="rating-ledger gaps", description=gaps.__doc__)
    ap.add_argument("--db", default="ledger.db")
    args = ap.parse_args(argv)
    if not Path(args.db).exists():
        print(f"no ledger database at {args.db}", file=sys.stderr)
        return 2
    found = gaps(args.db)
    for (center, device), ranges in sorted(found.items()):
        missing = sum(hi - lo + 1 for lo, hi in ranges)
        text = ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges) or "none"
        print(f"{center}/{device}: missing {text} ({missing})")
    return 0


def _options(args: argparse.Namespace) -> dict:
    """What the ledger runs with: the center file's values (if given), each overridden by its flag."""
    o: dict = {"db": "ledger.db", "host": "127.0.0.1", "port": 1883, "center": "+", "username": "", "password": "",
               "mqtt_version": "5", "ca": None}
    tls_port = None
    if args.center_file:
        cfg = center_config.load(args.center_file)
        host, port, ca = cfg.service_broker(cfg.ledger.mqtt_host, cfg.ledger.mqtt_port)
        tls_port = port if ca else None
        secret = cfg.secret_file(cfg.ledger.account)
        if not secret.exists():
            raise OSError(f"{secret}: no password for the {cfg.ledger.account} account (made by "
                          "`python -m provisioning --center ... broker-config`)")
        o.update(db=cfg.ledger.db, host=host, port=port, center=cfg.center.id, username=cfg.ledger.account,
                 password=secret.read_text().strip(), mqtt_version=cfg.ledger.mqtt_version, ca=ca)
    given = {k: getattr(args, k) for k in ("db", "host", "port", "center", "username", "mqtt_version")}
    o.update({k: v for k, v in given.items() if v is not None})
    if args.password_file:
        o["password"] = Path(args.password_file).read_text().strip()
    if o["port"] != tls_port:
        o["ca"] = None  # --port chose another listener than the center file's TLS one
    return o


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["gaps"]:
        return gaps_main(argv[1:])
    ap = argparse.ArgumentParser(prog="rating-ledger", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--center-file", help="the center file (docs/center-file.md): broker, TLS, account, database "
                                          "and MQTT version from it ([ledger], [broker], [accounts]); a flag "
                                          "given as well wins")
    ap.add_argument("--db", help="database (default: ledger.db, or [ledger] db)")
    ap.add_argument("--host", help="broker host (default: 127.0.0.1)")
    ap.add_argument("--port", type=int, help="broker port (default: 1883)")
    ap.add_argument("--center", help="center id, or + for all (default: +, or the center file's)")
    ap.add_argument("--username", help="MQTT user (the center broker has no anonymous access)")
    ap.add_argument("--password-file", help="file holding that user's password")
    ap.add_argument("--mqtt-version", choices=("5", "3.1.1"),
                    help="MQTT protocol version (3.1.1: no reason codes; receipts are the only acknowledgement)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s ledger %(levelname)s: %(message)s")
    try:
        opts = _options(args)
    except (center_config.CenterConfigError, OSError) as e:
        print(f"rating-ledger: {e}", file=sys.stderr)
        return 2
    ledger = Ledger(opts["db"], opts["host"], opts["port"], opts["center"], username=opts["username"],
                    password=opts["password"], mqtt_version=opts["mqtt_version"])
    if opts["ca"]:
        ledger.client.tls_set(ca_certs=str(opts["ca"]))
    stop = threading.Event()

    def on_signal(*_) -> None:
        stop.set()
        ledger._stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info("ledger for %s:%d%s, database %s", opts["host"], opts["port"], " (TLS)" if opts["ca"] else "",
             opts["db"])
    try:
        ledger.start()
    except LedgerError as e:
        log.critical("cannot start: %s", e)
        return 2
    problem = None
    while not stop.wait(1):
        problem = ledger.health()
        if problem:
            log.critical("stopping: %s", problem)
            break
    ledger.stop()
    log.info("stored %d ratings, rejected %d, failed %d, flagged %d, bad topics %d", ledger.stored, ledger.rejected,
             ledger.failed, ledger.flagged, ledger.bad_topic)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
