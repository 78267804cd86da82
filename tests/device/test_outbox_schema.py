"""The outbox's schema version: a release reads the schema before its own and migrates only when told.

A fake schema 2 (a migration monkeypatched into `outbox.MIGRATIONS`) plays the next release: its trial
opens the old store as it is, the updater's commit migrates it, and after a failed trial the old
release still opens what it finds.
"""
from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from device import machine, outbox
from device.model import Staff
from device.outbox import Outbox, OutboxError
from protocol import builders
from protocol.values import Channel, Level

ORIGIN = builders.Origin("C1", "W01", "dev1")
DRAFT = machine.RatingDraft("staff", Level.SATISFIED, Channel.TOUCH, Staff("S1", "王芳"))


def add(ob: Outbox):
    return ob.add("rating", lambda rid, seq, ts: builders.rating(DRAFT, ORIGIN, rid, seq, ts))


def user_version(path) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA user_version").fetchone()[0]
    finally:
        db.close()


def columns(path, table="outbox") -> list[str]:
    db = sqlite3.connect(path)
    try:
        return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
    finally:
        db.close()


def to_v2(db: sqlite3.Connection) -> None:
    db.execute("ALTER TABLE outbox ADD COLUMN channel_hint TEXT")


def v1_store(path, n=2) -> list[str]:
    """A store as the release with schema 1 leaves it (MIGRATIONS empty), with `n` ratings."""
    assert outbox.MIGRATIONS == []
    ob = Outbox(path)
    ids = [add(ob).id for _ in range(n)]
    ob.close()
    return ids


def test_a_new_store_is_made_at_this_releases_schema(tmp_path, monkeypatch):
    ob = Outbox(tmp_path / "outbox.db")
    assert ob.schema == outbox.schema_version() == 1
    ob.close()
    assert user_version(tmp_path / "outbox.db") == 1
    monkeypatch.setattr(outbox, "MIGRATIONS", [to_v2])
    ob = Outbox(tmp_path / "new.db")
    ob.close()
    assert user_version(tmp_path / "new.db") == 2


def test_a_store_without_a_version_is_schema_1_and_is_left_as_it_is(tmp_path):
    path = tmp_path / "outbox.db"
    v1_store(path)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=0")  # as every store made before versions existed
    db.close()
    ob = Outbox(path)
    assert ob.schema == 1 and ob.counts().pending == 2
    ob.close()
    assert user_version(path) == 0


def test_trial_does_not_migrate_commit_does(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    first = v1_store(path)
    monkeypatch.setattr(outbox, "MIGRATIONS", [to_v2])  # this process now plays the schema-2 release
    trial = Outbox(path)  # on trial: the runtime never passes migrate=True
    assert trial.schema == 1
    add(trial)
    trial.close()
    assert user_version(path) == 1 and "channel_hint" not in columns(path)
    assert outbox.migrate(tmp_path) == (1, 2)  # commit
    assert user_version(path) == 2 and "channel_hint" in columns(path)
    assert outbox.migrate(tmp_path) == (2, 2)  # a commit re-run after a power cut: nothing to do
    ob = Outbox(path)
    assert ob.schema == 2 and [r.id for r in ob.due(10)][:2] == first and ob.counts().pending == 3
    ob.close()


def test_rollback_after_a_failed_trial_finds_the_old_schema(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    first = v1_store(path)
    monkeypatch.setattr(outbox, "MIGRATIONS", [to_v2])
    trial = Outbox(path)
    rated_on_trial = add(trial).id
    trial.close()
    monkeypatch.setattr(outbox, "MIGRATIONS", [])  # rolled back: the schema-1 release again
    old = Outbox(path)
    assert old.schema == 1
    assert [r.id for r in old.due(10)] == first + [rated_on_trial]  # nothing rated on trial is lost
    old.close()


def test_the_old_release_refuses_a_store_migrated_past_it(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    v1_store(path)
    monkeypatch.setattr(outbox, "MIGRATIONS", [to_v2])
    outbox.migrate(path)
    monkeypatch.setattr(outbox, "MIGRATIONS", [])
    with pytest.raises(OutboxError) as e:
        Outbox(path)
    assert e.value.reason == "schema" and "schema 2" in str(e.value) and "newer release" in str(e.value)
    with pytest.raises(OutboxError):
        outbox.migrate(path)


def test_a_store_two_schemas_behind_needs_the_migration_first(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    v1_store(path)
    monkeypatch.setattr(outbox, "MIGRATIONS", [to_v2, lambda db: db.execute("CREATE TABLE v3 (x)")])
    with pytest.raises(OutboxError) as e:
        Outbox(path)
    assert "reads 2..3" in str(e.value) and "migrate" in str(e.value)
    ob = Outbox(path, migrate=True)
    assert ob.schema == 3 and ob.counts().pending == 2
    ob.close()
    assert user_version(path) == 3


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "outbox.db"
    v1_store(path)

    def half(db):
        db.execute("ALTER TABLE outbox ADD COLUMN half TEXT")
        raise RuntimeError("migration bug")

    monkeypatch.setattr(outbox, "MIGRATIONS", [half])
    with pytest.raises(RuntimeError):
        outbox.migrate(tmp_path)
    assert user_version(path) == 1 and "half" not in columns(path)


def test_command_line_migrate_and_version(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "device.outbox", *a], capture_output=True, text=True)
    out = run("migrate", str(tmp_path))
    assert out.returncode == 0 and "no outbox yet" in out.stdout
    v1_store(tmp_path / "outbox.db")
    out = run("migrate", str(tmp_path))
    assert out.returncode == 0 and "schema 1, nothing to do" in out.stdout, out
    assert "schema 1" in run("version", str(tmp_path)).stdout
    db = sqlite3.connect(tmp_path / "outbox.db")
    db.execute("PRAGMA user_version=5")
    db.close()
    out = run("migrate", str(tmp_path))
    assert out.returncode == 1 and "schema 5" in out.stderr
