"""API keys on the center store (SQLite and PostgreSQL): made, listed, revoked; only a hash kept; the CLI."""
from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st
from sqlalchemy import select

from center import apikeys
from center.apikeys import ApiKey, ApiKeyError, create_key, keys_main, list_keys, lookup, revoke_key
from center.store import Store, sqlite_url
from center.store.tables import api_keys, audit


def test_a_key_is_shown_once_and_only_its_hash_is_kept(store):
    key, secret = create_key(store, "queue-1", frozenset({"W01", "W02"}))
    assert key == ApiKey("queue-1", frozenset({"W01", "W02"}))
    assert secret.startswith("hcp_") and len(secret) == 47
    with store.read() as conn:
        rows = [tuple(r) for r in conn.execute(select(api_keys)).all()]
    assert rows and not any(secret in str(v) or secret[4:] in str(v) for r in rows for v in r)
    assert lookup(store, secret) == key
    assert lookup(store, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None


def test_center_wide_and_limited_keys(store):
    whole, s1 = create_key(store, "hall")
    part, s2 = create_key(store, "queue", frozenset({"W01"}))
    assert lookup(store, s1).allows("W07") and whole.windows is None
    assert lookup(store, s2).allows("W01") and not lookup(store, s2).allows("W02")
    assert [(k.name, k.windows, k.revoked) for k in list_keys(store)] == [
        ("hall", None, None), ("queue", frozenset({"W01"}), None)]


def test_a_revoked_key_stops_at_once_and_its_name_stays_taken(store):
    _, secret = create_key(store, "old")
    assert revoke_key(store, "old") is True
    assert lookup(store, secret) is None
    assert revoke_key(store, "old") is False
    with pytest.raises(ApiKeyError):
        create_key(store, "old")
    with store.read() as conn:
        assert [r.action for r in conn.execute(select(audit).order_by(audit.c.id))] == ["key_add", "key_revoke"]


@pytest.mark.parametrize("name, windows", [("", None), ("a b", None), ("x" * 33, None), ("ok", frozenset()),
                                           ("ok", frozenset({"W 1"})), ("ok", frozenset({"W01\n"}))])
def test_bad_names_and_windows_store_nothing(store, name, windows):
    with pytest.raises(ApiKeyError):
        create_key(store, name, windows)
    assert list_keys(store) == []


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_bearer_text_is_refused_without_an_error(tmp_path_factory, text):
    store = _STORE.setdefault("s", Store(sqlite_url(tmp_path_factory.mktemp("k") / "k.db")))
    assert lookup(store, text) is None


_STORE: dict[str, Store] = {}


def test_the_command_line(tmp_path, capsys):
    db = str(tmp_path / "center.db")
    assert keys_main(["add", "queue-a", "--windows", "W01,W02", "--db", db]) == 0
    secret = capsys.readouterr().out.strip()
    assert keys_main(["add", "hall", "--db", db]) == 0
    capsys.readouterr()
    assert keys_main(["add", "hall", "--db", db]) == 1
    assert "exists" in capsys.readouterr().err
    assert keys_main(["add", "bad", "--windows", "W 1", "--db", db]) == 1
    assert keys_main(["list", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "queue-a\tW01,W02\tlive" in out and "hall\t*\tlive" in out and secret not in out
    assert keys_main(["revoke", "queue-a", "--db", db]) == 0
    assert keys_main(["revoke", "queue-a", "--db", db]) == 1
    assert keys_main(["list", "--center-file", str(tmp_path / "missing.toml")]) == 2
    s = Store(sqlite_url(db))
    try:
        assert lookup(s, secret) is None
    finally:
        s.close()


def test_parse_windows():
    assert apikeys.parse_windows("") is None
    assert apikeys.parse_windows(" W01, W02 ,") == frozenset({"W01", "W02"})
    with pytest.raises(ApiKeyError):
        apikeys.parse_windows("W01,../x")
