"""Center staff accounts on the center store: users with a role (admin, supervisor, auditor) and, for a
supervisor, their windows; sessions (only the SHA-256 of a session token is kept); the audit log.

Passwords are scrypt-hashed (provisioning.users). Sign-in limits and the pages are center/web/console/.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, insert, select

from center.store import Store
from center.store.tables import audit as audit_log, sessions, users
from provisioning.users import NAME, check_password, hash_password, new_token, token_hash

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
    if len(password) < 10:
        raise AccountError("password: at least 10 characters")
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


def _user(row) -> User:
    return User(row.name, row.role, frozenset(row.windows.split(",")) if row.windows else None)
