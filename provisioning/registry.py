"""The pairing service's own records (SQLite, WAL, synchronous=FULL): terminals, announcements with
their pairing codes, staff accounts and sessions, the audit log, failed attempts.

Shared by the console service and the CLI (each opens its own connection; SQLite serialises writers).
Nothing secret is stored in clear: staff passwords and session tokens are hashed; a rotated device
password is held only until the terminal confirms it has it (then it is set at the broker and dropped).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
PRAGMA journal_mode=WAL;
CREATE TABLE IF NOT EXISTS devices (
    device TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('active', 'retired', 'unpaired', 'revoked')),
    window TEXT,                    -- the window it serves (active), or served last
    key TEXT NOT NULL,              -- its X25519 public key (base64url), from the announcement it paired with
    client_id TEXT NOT NULL,
    cred INTEGER NOT NULL,          -- generation of the password in force at the broker
    rotating_cred INTEGER,          -- a rotation waiting for the terminal's confirmation
    rotating_password TEXT,
    answer_topic TEXT,              -- retained credentials answer, cleared once the terminal is online
    model TEXT, fw TEXT,
    replaced_by TEXT,
    paired_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS announcements (
    device TEXT NOT NULL,
    key TEXT NOT NULL,
    model TEXT, fw TEXT,
    code TEXT NOT NULL UNIQUE,
    code_expires REAL NOT NULL,     -- wall clock
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    PRIMARY KEY (device, key)
);
CREATE TABLE IF NOT EXISTS status (
    device TEXT PRIMARY KEY, state TEXT NOT NULL, window TEXT, pending INTEGER, quarantined INTEGER,
    alarms TEXT, cred INTEGER, fw TEXT, seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    token_hash TEXT PRIMARY KEY, user TEXT NOT NULL, csrf TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attempts (who TEXT NOT NULL, what TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS attempts_by_who ON attempts(what, who, at);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL,
    target TEXT NOT NULL, detail TEXT NOT NULL DEFAULT ''
);
"""


@dataclass(frozen=True)
class Device:
    device: str
    state: str
    window: str | None
    key: str
    client_id: str
    cred: int
    rotating_cred: int | None
    rotating_password: str | None
    answer_topic: str | None
    model: str | None
    fw: str | None
    replaced_by: str | None
    paired_at: float
    updated_at: float

    def __repr__(self) -> str:
        return f"Device({self.device!r}, {self.state}, window={self.window!r}, cred={self.cred})"


@dataclass(frozen=True)
class Announcement:
    device: str
    key: str
    model: str | None
    fw: str | None
    code: str
    code_expires: float
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class Status:
    device: str
    state: str
    window: str | None
    pending: int | None
    quarantined: int | None
    alarms: str
    cred: int | None
    fw: str | None
    seen: float


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    who: str
    action: str
    target: str
    detail: str


class Registry:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        if fresh:
            os.chmod(self.path, 0o600)
        self.db.executescript(SCHEMA)
        self.db.execute("PRAGMA synchronous=FULL")
        self.lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    def tx(self):
        """`with registry.tx():` one IMMEDIATE transaction, serialised with the other threads."""
        return _Tx(self)

    # ---- devices --------------------------------------------------------------------------------

    def device(self, device: str) -> Device | None:
        row = self.db.execute("SELECT * FROM devices WHERE device=?", (device,)).fetchone()
        return Device(*row) if row else None

    def devices(self) -> list[Device]:
        return [Device(*r) for r in self.db.execute("SELECT * FROM devices ORDER BY window, device")]

    def put_device(self, d: Device) -> None:
        self.db.execute("INSERT OR REPLACE INTO devices VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (d.device, d.state, d.window, d.key, d.client_id, d.cred, d.rotating_cred,
                         d.rotating_password, d.answer_topic, d.model, d.fw, d.replaced_by, d.paired_at, time.time()))

    def update_device(self, device: str, **changes) -> None:
        cols = ", ".join(f"{k}=?" for k in changes)
        self.db.execute(f"UPDATE devices SET {cols}, updated_at=? WHERE device=?",
                        (*changes.values(), time.time(), device))

    def delete_device(self, device: str) -> None:
        self.db.execute("DELETE FROM devices WHERE device=?", (device,))

    # ---- announcements --------------------------------------------------------------------------

    def announcement(self, device: str, key: str) -> Announcement | None:
        row = self.db.execute("SELECT * FROM announcements WHERE device=? AND key=?", (device, key)).fetchone()
        return Announcement(*row) if row else None

    def announcement_by_code(self, code: str) -> Announcement | None:
        row = self.db.execute("SELECT * FROM announcements WHERE code=?", (code,)).fetchone()
        return Announcement(*row) if row else None

    def announcements(self, now: float | None = None) -> list[Announcement]:
        now = time.time() if now is None else now
        return [Announcement(*r) for r in self.db.execute(
            "SELECT * FROM announcements WHERE code_expires > ? ORDER BY last_seen DESC", (now,))]

    def put_announcement(self, a: Announcement) -> None:
        self.db.execute("INSERT OR REPLACE INTO announcements VALUES (?,?,?,?,?,?,?,?)",
                        (a.device, a.key, a.model, a.fw, a.code, a.code_expires, a.first_seen, a.last_seen))

    def touch_announcement(self, device: str, key: str, now: float) -> None:
        self.db.execute("UPDATE announcements SET last_seen=? WHERE device=? AND key=?", (now, device, key))

    def drop_announcements(self, device: str) -> list[Announcement]:
        gone = [Announcement(*r) for r in self.db.execute("SELECT * FROM announcements WHERE device=?", (device,))]
        self.db.execute("DELETE FROM announcements WHERE device=?", (device,))
        return gone

    def expired_announcements(self, now: float) -> list[Announcement]:
        return [Announcement(*r) for r in self.db.execute(
            "SELECT * FROM announcements WHERE code_expires <= ?", (now,))]

    def drop_announcement(self, device: str, key: str) -> None:
        self.db.execute("DELETE FROM announcements WHERE device=? AND key=?", (device, key))

    def pending_count(self) -> int:
        return self.db.execute("SELECT count(*) FROM announcements").fetchone()[0]

    # ---- status (from the terminals' retained status messages) ---------------------------------

    def put_status(self, s: Status) -> None:
        self.db.execute("INSERT OR REPLACE INTO status VALUES (?,?,?,?,?,?,?,?,?)",
                        (s.device, s.state, s.window, s.pending, s.quarantined, s.alarms, s.cred, s.fw, s.seen))

    def status(self, device: str) -> Status | None:
        row = self.db.execute("SELECT * FROM status WHERE device=?", (device,)).fetchone()
        return Status(*row) if row else None

    # ---- staff, sessions, attempts ---------------------------------------------------------------

    def user_hash(self, name: str) -> str | None:
        row = self.db.execute("SELECT hash FROM users WHERE name=?", (name,)).fetchone()
        return row[0] if row else None

    def put_user(self, name: str, hashed: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO users VALUES (?,?,?)", (name, hashed, time.time()))

    def users(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM users ORDER BY name")]

    def put_session(self, token_hash: str, user: str, csrf: str, expires: float) -> None:
        self.db.execute("INSERT INTO sessions VALUES (?,?,?,?,?)", (token_hash, user, csrf, time.time(), expires))

    def session(self, token_hash: str, now: float) -> tuple[str, str] | None:
        row = self.db.execute("SELECT user, csrf FROM sessions WHERE token_hash=? AND expires > ?",
                              (token_hash, now)).fetchone()
        return (row[0], row[1]) if row else None

    def drop_session(self, token_hash: str) -> None:
        self.db.execute("DELETE FROM sessions WHERE token_hash=?", (token_hash,))

    def attempt(self, what: str, who: str, now: float) -> None:
        self.db.execute("INSERT INTO attempts VALUES (?,?,?)", (who, what, now))

    def attempts_since(self, what: str, who: str | None, since: float) -> int:
        if who is None:
            return self.db.execute("SELECT count(*) FROM attempts WHERE what=? AND at > ?", (what, since)).fetchone()[0]
        return self.db.execute("SELECT count(*) FROM attempts WHERE what=? AND who=? AND at > ?",
                               (what, who, since)).fetchone()[0]

    # ---- audit ----------------------------------------------------------------------------------

    def audit(self, who: str, action: str, target: str, detail: str = "") -> None:
        """Who did what, when. Never pass a secret in `detail`."""
        self.db.execute("INSERT INTO audit (at, who, action, target, detail) VALUES (?,?,?,?,?)",
                        (time.time(), who, action, target, detail[:500]))

    def audit_log(self, limit: int = 200) -> list[AuditEntry]:
        return [AuditEntry(*r) for r in self.db.execute(
            "SELECT id, at, who, action, target, detail FROM audit ORDER BY id DESC LIMIT ?", (limit,))]


class _Tx:
    def __init__(self, reg: Registry):
        self.reg = reg

    def __enter__(self) -> Registry:
        self.reg.lock.acquire()
        self.reg.db.execute("BEGIN IMMEDIATE")
        return self.reg

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.reg.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.reg.lock.release()
