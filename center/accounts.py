"""Center staff accounts on the center store: users with a role (admin, supervisor, auditor) and, for a
supervisor, their windows; sessions (only the SHA-256 of a session token is kept); the audit log.

Passwords are scrypt-hashed (provisioning.users). Failed sign-ins are slowed per (name, address) — see
`SignInLimits`; the pages are center/web/console/. `python -m center users add …` is `users_main`.
"""
from __future__ import annotations

import argparse
import getpass
import sys
import threading
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, insert, select, text, update

from center.store import Store
from center.store.tables import attempts, audit as audit_log, sessions, users
from provisioning.users import printable, MIN_PASSWORD, NAME, check_password, hash_password, new_token, token_hash

ROLES = ("admin", "supervisor", "auditor")
SESSION_S = 8 * 3600


@dataclass(frozen=True)
class User:
    name: str
    role: str
    windows: frozenset[str] | None   # None: every window

    def sees(self, window: str) -> bool:
        return self.windows is None or window in self.windows


class AccountError(ValueError):
    """A name, role or password not acceptable: nothing stored."""


def create_user(store: Store, name: str, password: str, role: str, windows: frozenset[str] | None = None,
                now: float | None = None) -> User:
    if not NAME.fullmatch(name or ""):
        raise AccountError("name: 1–32 of A–Z a–z 0–9 _ . -")
    if role not in ROLES:
        raise AccountError(f"role: one of {', '.join(ROLES)}")
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"password: at least {MIN_PASSWORD} characters")
    if role == "supervisor" and not windows:
        raise AccountError("windows: a supervisor needs the windows they supervise")
    with store.write() as conn:
        if conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise AccountError(f"name: {name} exists already")
        conn.execute(insert(users).values(name=name, hash=hash_password(password), role=role,
                                          windows=",".join(sorted(windows)) if windows else None,
                                          created=time.time() if now is None else now))
    return User(name, role, frozenset(windows) if windows else None)


def user(store: Store, name: str) -> User | None:
    with store.read() as conn:
        row = conn.execute(select(users).where(users.c.name == name, users.c.disabled == 0)).first()
    return None if row is None else _user(row)


def verify(store: Store, name: str, password: str) -> User | None:
    """The user when the password is theirs (constant work for unknown names), else None."""
    with store.read() as conn:
        row = conn.execute(select(users).where(users.c.name == name, users.c.disabled == 0)).first()
    ok = check_password(password, row.hash if row is not None else None)
    return _user(row) if ok and row is not None else None


def start_session(store: Store, name: str, now: float | None = None) -> tuple[str, str]:
    """(session token for the cookie, CSRF token for the forms)."""
    now = time.time() if now is None else now
    token, csrf = new_token(), new_token()
    with store.write() as conn:
        conn.execute(insert(sessions).values(token_hash=token_hash(token), user=name, csrf=csrf, created=now,
                                             expires=now + SESSION_S))
    return token, csrf


def session_user(store: Store, token: str, now: float | None = None) -> tuple[User, str] | None:
    if not token:
        return None
    now = time.time() if now is None else now
    with store.read() as conn:
        row = conn.execute(select(sessions.c.user, sessions.c.csrf, sessions.c.expires)
                           .where(sessions.c.token_hash == token_hash(token))).first()
        if row is None or row.expires <= now:
            return None
        u = conn.execute(select(users).where(users.c.name == row.user, users.c.disabled == 0)).first()
    return None if u is None else (_user(u), row.csrf)


def end_session(store: Store, token: str) -> None:
    with store.write() as conn:
        conn.execute(delete(sessions).where(sessions.c.token_hash == token_hash(token)))


def audit(conn, who: str, action: str, target: str, detail: str = "", now: float | None = None) -> None:
    """One audit line, inside the caller's transaction (the change and its record commit together)."""
    conn.execute(insert(audit_log).values(at=time.time() if now is None else now, who=who[:64], action=action[:32],
                                          target=target[:128], detail=detail))


def set_disabled(store: Store, name: str, disabled: bool, who: str) -> bool:
    """Disable (and sign out) or re-enable a user; audited. False when there is no such user."""
    with store.write() as conn:
        done = conn.execute(update(users).where(users.c.name == name).values(disabled=int(disabled))).rowcount
        if done:
            if disabled:
                conn.execute(delete(sessions).where(sessions.c.user == name))
            audit(conn, who, "user-disable" if disabled else "user-enable", name)
    return bool(done)


def all_users(store: Store) -> list[tuple[User, bool]]:
    """Every user with their `disabled` flag, by name."""
    with store.read() as conn:
        rows = conn.execute(select(users).order_by(users.c.name)).all()
    return [(_user(r), bool(r.disabled)) for r in rows]


@dataclass(frozen=True)
class AuditEntry:
    at: float
    who: str
    action: str
    target: str
    detail: str


def audit_entries(store: Store, limit: int = 300) -> list[AuditEntry]:
    """The newest `limit` audit lines, newest first (raw: escape them with `printable` before showing)."""
    with store.read() as conn:
        rows = conn.execute(select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)).all()
    return [AuditEntry(r.at, r.who, r.action, r.target, r.detail) for r in rows]


# ---- failed sign-ins ---------------------------------------------------------------------------------

FREE_FAILURES = 5          # per (name, address) in FAILURE_WINDOW_S: then each try waits longer
FAILURE_WINDOW_S = 900
MAX_DELAY_S = 900


class SignInLimits:
    """Failed sign-ins, counted per (name, client address) — never per name alone (anyone could then lock
    a colleague out) nor per address alone (behind a proxy everyone shares one). After FREE_FAILURES
    failures of a pair within FAILURE_WINDOW_S, the pair must wait 2**(n-FREE_FAILURES) s (at most
    MAX_DELAY_S) after its last try before the next one is even looked at: an answer 429 with Retry-After.
    A success clears the pair. Each try is counted (`begin`) BEFORE the password is checked, under one lock
    and in one transaction, so parallel tries cannot slip past the count; `succeeded` takes it back.
    """

    def __init__(self, store: Store):
        self.store = store
        self._lock = threading.Lock()   # SQLite's write lock or PostgreSQL's advisory lock do it across processes

    @staticmethod
    def key(name: str, address: str) -> str:
        return f"{name[:32]}|{address[:64]}"

    def begin(self, name: str, address: str, now: float | None = None) -> float:
        """0 when this try may go ahead (it is counted now), else the seconds to wait (nothing counted)."""
        now = time.time() if now is None else now
        k = self.key(name, address)
        with self._lock, self.store.write() as conn:
            if conn.dialect.name == "postgresql":   # several service processes on one database
                conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": k})
            n, last = conn.execute(select(func.count(), func.max(attempts.c.at)).where(
                attempts.c.what == "login", attempts.c.who == k, attempts.c.at > now - FAILURE_WINDOW_S)).one()
            if n >= FREE_FAILURES:
                wait = last + min(2.0 ** (n - FREE_FAILURES), MAX_DELAY_S) - now
                if wait > 0:
                    return wait
            conn.execute(insert(attempts).values(what="login", who=k, at=now))
        return 0.0

    def succeeded(self, name: str, address: str) -> None:
        with self._lock, self.store.write() as conn:
            conn.execute(delete(attempts).where(attempts.c.what == "login",
                                                attempts.c.who == self.key(name, address)))

    def purge(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.store.write() as conn:
            conn.execute(delete(attempts).where(attempts.c.what == "login", attempts.c.at <= now - FAILURE_WINDOW_S))


# ---- `python -m center users …` ----------------------------------------------------------------------

def users_main(argv: list[str], store: Store | None = None) -> int:
    """`users add NAME --role admin|supervisor|auditor [--windows W01,W02] (--db URL | --center-file F)`,
    `users list`, `users disable NAME`, `users enable NAME`. The password comes from stdin when it is not a
    terminal, else from a prompt (twice)."""
    ap = argparse.ArgumentParser(prog="python -m center users", description="center staff accounts")
    ap.add_argument("--db", help="store URL or SQLite path (default: from --center-file)")
    ap.add_argument("--center-file", help="the center file (its [ledger] database)")
    ap.add_argument("--as", dest="who", default=f"cli:{getpass.getuser()}", help="name written to the audit log")
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("add", help="add a user")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=ROLES)
    a.add_argument("--windows", default="", help="a supervisor's windows, comma-separated")
    sub.add_parser("list", help="every user")
    for cmd in ("disable", "enable"):
        sub.add_parser(cmd, help=f"{cmd} a user").add_argument("name")
    args = ap.parse_args(argv)
    own = store is None
    if own:
        url = args.db
        if not url and args.center_file:
            from provisioning import config as center_config
            cfg = center_config.load(args.center_file)
            url = cfg.ledger.url or str(cfg.ledger.db)
        if not url:
            ap.error("give --db or --center-file")
        store = Store(url)
    try:
        if args.cmd == "add":
            windows = frozenset(w.strip() for w in args.windows.split(",") if w.strip()) or None
            password = _read_password()
            try:
                create_user(store, args.name, password, args.role, windows)
            except AccountError as e:
                print(printable(e), file=sys.stderr)
                return 2
            with store.write() as conn:
                audit(conn, args.who, "user-add", args.name, f"role {args.role}")
            print(f"user {args.name} ({args.role}) added")
            return 0
        if args.cmd == "list":
            for u, off in all_users(store):
                wins = ",".join(sorted(u.windows)) if u.windows else "*"
                print(f"{u.name:<32} {u.role:<10} {wins}{'  (disabled)' if off else ''}")
            return 0
        if not set_disabled(store, args.name, args.cmd == "disable", args.who):
            print(f"no user {printable(args.name)}", file=sys.stderr)
            return 1
        print(f"user {args.name} {args.cmd}d")
        return 0
    finally:
        if own:
            store.close()


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise SystemExit("the passwords differ")
    return first


def _user(row) -> User:
    return User(row.name, row.role, frozenset(row.windows.split(",")) if row.windows else None)
