"""API keys of the systems that call the center's JSON APIs (the case and duty feed, the data API).

A key is `hcp_` + 43 URL-safe characters (256 random bits), shown once when made; the store keeps only its
SHA-256 (`api_keys.key_hash`): a copy of the database lets nobody in. A key is center-wide (`windows` None:
every window, the notice's "whole center under one key") or limited to one business system's windows.
Revoking keeps the row (its name stays taken, the audit stays readable).

    python -m center keys add NAME [--windows W01,W02] --center-file center.toml   (or --db URL)
    python -m center keys list --center-file center.toml
    python -m center keys revoke NAME --center-file center.toml

Callers send `Authorization: Bearer <key>`; `api_key(request, store)` → `ApiKey` or None, and
`key_dependency(store)` is the FastAPI dependency (401 with `WWW-Authenticate: Bearer` without a valid key).
"""
from __future__ import annotations

import argparse
import hashlib
import re
import secrets
import sys
import time
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import insert, select, update

from center.store import Store
from center.store.tables import api_keys

PREFIX = "hcp_"
NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
WINDOW = re.compile(r"[A-Za-z0-9_-]{1,32}")
KEY = re.compile(r"hcp_[A-Za-z0-9_-]{43}")


# Declares the scheme in the OpenAPI document; the dependency itself reads the header (own 401 body).
BEARER = HTTPBearer(auto_error=False, scheme_name="apiKey",
                    description="an API key from `python -m center keys add`")


class ApiKeyError(ValueError):
    """A name or window list not acceptable, or a name taken: nothing stored."""


@dataclass(frozen=True)
class ApiKey:
    """Who is calling: the key's name and the windows it may act on (None: every window)."""
    name: str
    windows: frozenset[str] | None

    def allows(self, window: str) -> bool:
        return self.windows is None or window in self.windows

    @property
    def who(self) -> str:
        """The caller as the audit log names it."""
        return f"key:{self.name}"


@dataclass(frozen=True)
class KeyInfo:
    name: str
    windows: frozenset[str] | None
    created: float
    revoked: float | None


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def parse_windows(text: str | None) -> frozenset[str] | None:
    """`W01,W02` → the set; empty or None → None (every window)."""
    if not text:
        return None
    found = frozenset(w.strip() for w in text.split(",") if w.strip())
    bad = sorted(w for w in found if not WINDOW.fullmatch(w))
    if bad:
        raise ApiKeyError(f"windows: not a window id: {', '.join(bad)[:100]}")
    return found or None


def create_key(store: Store, name: str, windows: frozenset[str] | None = None,
               now: float | None = None) -> tuple[ApiKey, str]:
    """Make a key; (the key, its secret — shown once, never stored)."""
    if not NAME.fullmatch(name or ""):
        raise ApiKeyError("name: 1–32 of A–Z a–z 0–9 _ . -")
    if windows is not None:
        windows = frozenset(windows)
        if not windows:
            raise ApiKeyError("windows: give at least one, or none for a center-wide key")
        bad = sorted(w for w in windows if not isinstance(w, str) or not WINDOW.fullmatch(w))
        if bad:
            raise ApiKeyError(f"windows: not a window id: {', '.join(map(repr, bad))[:100]}")
    secret = PREFIX + secrets.token_urlsafe(32)
    with store.write() as conn:
        if conn.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first():
            raise ApiKeyError(f"name: {name} exists already")
        conn.execute(insert(api_keys).values(name=name, key_hash=key_hash(secret),
                                             windows=",".join(sorted(windows)) if windows else None,
                                             created=time.time() if now is None else now))
        _audit(conn, "keys", "key_add", name, f"windows={','.join(sorted(windows)) if windows else '*'}")
    return ApiKey(name, windows), secret


def list_keys(store: Store) -> list[KeyInfo]:
    with store.read() as conn:
        rows = conn.execute(select(api_keys).order_by(api_keys.c.name)).all()
    return [KeyInfo(r.name, _windows(r.windows), r.created, r.revoked) for r in rows]


def revoke_key(store: Store, name: str, now: float | None = None) -> bool:
    """True when a live key of that name was revoked."""
    with store.write() as conn:
        done = conn.execute(update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked.is_(None))
                            .values(revoked=time.time() if now is None else now)).rowcount
        if done:
            _audit(conn, "keys", "key_revoke", name)
    return bool(done)


def lookup(store: Store, secret: str) -> ApiKey | None:
    """The live key with this secret, or None (malformed secrets never reach the database)."""
    if not isinstance(secret, str) or not KEY.fullmatch(secret):
        return None
    with store.read() as conn:
        row = conn.execute(select(api_keys.c.name, api_keys.c.windows)
                           .where(api_keys.c.key_hash == key_hash(secret), api_keys.c.revoked.is_(None))).first()
    return None if row is None else ApiKey(row.name, _windows(row.windows))


def bearer(request: Request) -> str:
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def api_key(request: Request, store: Store) -> ApiKey | None:
    return lookup(store, bearer(request))


def key_dependency(store: Store, extra: dict[str, ApiKey] | None = None):
    """A FastAPI dependency: the calling `ApiKey`, or 401. `extra` maps secrets not in the store (the
    center file's legacy `[web] feed_key_file`) to their key."""
    import hmac
    extra = dict(extra or {})

    def dependency(request: Request, _: HTTPAuthorizationCredentials | None = Depends(BEARER)) -> ApiKey:
        secret = bearer(request)
        for known, key in extra.items():
            if hmac.compare_digest(secret.encode(), known.encode()):
                return key
        found = lookup(store, secret)
        if found is None:
            raise HTTPException(401, "a valid API key is needed (Authorization: Bearer <key>)",
                                headers={"WWW-Authenticate": "Bearer"})
        return found
    return dependency


def _windows(text: str | None) -> frozenset[str] | None:
    return frozenset(text.split(",")) if text else None


def _audit(conn, who: str, action: str, target: str, detail: str = "") -> None:
    from center.accounts import audit
    audit(conn, who, action, target, detail)


# ---- python -m center keys ... ---------------------------------------------------------------------------

def _store(args) -> Store:
    if args.db:
        from center.store import sqlite_url
        return Store(args.db if "://" in args.db else sqlite_url(args.db))
    from provisioning import config as center_config
    from center.store import sqlite_url
    cfg = center_config.load(args.center_file)
    return Store(cfg.ledger.url or sqlite_url(cfg.ledger.db))


def keys_main(argv: list[str] | None = None) -> int:
    """`python -m center keys add|list|revoke ... --center-file F | --db URL`: exit 0 done, 1 refused,
    2 no usable database (the reason on stderr)."""
    where = argparse.ArgumentParser(add_help=False)
    db = where.add_mutually_exclusive_group(required=True)
    db.add_argument("--center-file", help="the center file (its [ledger] database)")
    db.add_argument("--db", help="a database URL or SQLite file instead")
    ap = argparse.ArgumentParser(prog="python -m center keys", description="API keys of the case and data APIs")
    sub = ap.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", parents=[where], help="make a key (its secret is printed once)")
    add.add_argument("name")
    add.add_argument("--windows", default="", help="comma-separated windows; none: the whole center")
    sub.add_parser("list", parents=[where], help="the keys (never their secrets)")
    rev = sub.add_parser("revoke", parents=[where], help="a key stops working at once")
    rev.add_argument("name")
    args = ap.parse_args(argv)
    from provisioning.config import CenterConfigError
    try:
        store = _store(args)
    except (CenterConfigError, OSError, ValueError) as e:
        print(f"python -m center keys: {e}", file=sys.stderr)
        return 2
    try:
        if args.cmd == "add":
            key, secret = create_key(store, args.name, parse_windows(args.windows))
            print(secret)
            print(f"key {key.name} for {', '.join(sorted(key.windows)) if key.windows else 'every window'}: "
                  "shown once, keep it in the business system's configuration", file=sys.stderr)
        elif args.cmd == "list":
            for k in list_keys(store):
                state = f"revoked {time.strftime('%Y-%m-%d %H:%M', time.localtime(k.revoked))}" if k.revoked else "live"
                print(f"{k.name}\t{','.join(sorted(k.windows)) if k.windows else '*'}\t{state}")
        elif not revoke_key(store, args.name):
            print(f"no live key named {args.name}", file=sys.stderr)
            return 1
    except ApiKeyError as e:
        print(e, file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0
