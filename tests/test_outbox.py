"""The outbox on real SQLite files: durable, bounded without eviction, self-healing on corruption."""
from __future__ import annotations

import json
import sqlite3

import pytest

from device import machine, records
from device.model import Channel, Level, Staff
from device.messages import MessageError
from device.outbox import Outbox, OutboxError, OutboxFull

ORIGIN = records.Origin("C1", "W01", "dev1")
DRAFT = machine.RatingDraft("staff", Level.SATISFIED, Channel.TOUCH, Staff("S1", "王芳"))


def add(ob: Outbox, draft=DRAFT, case_id=None):
    return ob.add("rating", lambda rid, seq, ts: records.rating(draft, ORIGIN, rid, seq, ts), case_id=case_id)


def test_pragmas_are_wal_and_full_for_adding(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    assert ob._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert ob._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: every rating is fsynced
    assert ob._gone.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL: only receipted deletions


def test_committed_rows_survive_reopen_and_sequence_never_repeats(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    recs = [add(ob) for _ in range(5)]
    ob.delivered([(recs[-1].id, recs[-1].seq)])
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert [r.id for r in ob.due(10)] == [r.id for r in recs[:4]]
    nxt = add(ob)
    assert nxt.seq > 5 and json.loads(nxt.payload)["seq"] == nxt.seq  # strictly increasing, gaps allowed
    ob.delivered([(r.id, r.seq) for r in ob.due(100)])
    ob.close()
    ob = Outbox(tmp_path / "o.db")  # an empty store still continues the sequence
    assert add(ob).seq > nxt.seq


def test_due_is_in_sequence_order_and_pages_with_after(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    recs = [add(ob) for _ in range(7)]
    first = ob.due(3)
    assert [r.seq for r in first] == [1, 2, 3]
    assert [r.seq for r in ob.due(10, after=first[-1].seq)] == [4, 5, 6, 7]
    assert all(r.id == d.id for r, d in zip(recs, ob.due(10)))


def test_full_outbox_refuses_and_evicts_nothing(tmp_path):
    ob = Outbox(tmp_path / "o.db", capacity=10)
    recs = [add(ob) for _ in range(10)]
    with pytest.raises(OutboxFull):
        add(ob)
    assert [r.id for r in ob.due(100)] == [r.id for r in recs]
    ob.quarantine(recs[0].id, "test")
    with pytest.raises(OutboxFull):  # quarantined records count: they are kept, too
        add(ob)
    ob.delivered([(recs[1].id, None)])  # by id alone: a stray receipt
    add(ob)


def test_quarantine_keeps_the_record_and_requeue_offers_it_again(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    r = add(ob)
    assert ob.quarantine(r.id, "PUBACK 0x87 Not authorized")
    assert ob.due(10) == [] and ob.quarantined() == [(r.id, "PUBACK 0x87 Not authorized")]
    assert ob.delivered([(r.id, r.seq)]) == 0  # a receipt does not silently drop a quarantined record
    assert ob.counts().quarantined == 1
    assert ob.requeue_quarantined() == 1
    assert [x.id for x in ob.due(10)] == [r.id]


def test_rated_cases_are_remembered_across_restarts(tmp_path):
    from device.model import Case
    c = Case("SH1", "i", "n", Staff("S1", "王"), "ap_0123456789", "张*")
    draft = machine.RatingDraft("case", Level.SATISFIED, Channel.TOUCH, c.staff, c)
    ob = Outbox(tmp_path / "o.db")
    add(ob, draft, case_id="SH1")
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert ob.case_rated("SH1") and not ob.case_rated("SH2")


def test_an_invalid_record_is_not_stored(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    bad = machine.RatingDraft("staff", Level.DISSATISFIED, Channel.TOUCH, Staff("S1", "王"))  # no reasons
    with pytest.raises(MessageError):
        add(ob, bad)
    assert ob.counts().pending == 0 and ob.due(10) == []
    add(ob)  # and the store still works


def test_disk_full_is_reported_and_nothing_half_written(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    add(ob)
    pages = ob._db.execute("PRAGMA page_count").fetchone()[0]
    ob._db.execute(f"PRAGMA max_page_count={pages}")  # the file may not grow: SQLITE_FULL
    with pytest.raises(OutboxError) as err:
        for _ in range(200):
            add(ob)
    assert err.value.reason == "disk_full"
    stored = ob.counts().pending
    ob._db.execute("PRAGMA max_page_count=1073741823")
    assert len(ob.due(1000)) == stored
    add(ob)


def test_garbage_file_is_moved_aside_with_an_alarm_and_a_fresh_store_works(tmp_path):
    path = tmp_path / "o.db"
    path.write_bytes(b"this is not a database" * 100)
    alarms = []
    ob = Outbox(path, on_alarm=lambda code, detail: alarms.append(code))
    assert alarms == ["outbox_corrupt"]
    assert list(tmp_path.glob("o.db.corrupt-*"))
    add(ob)
    assert ob.counts().pending == 1


def test_damaged_pages_are_salvaged_into_the_new_store(tmp_path):
    path = tmp_path / "o.db"
    ob = Outbox(path)
    recs = [add(ob) for _ in range(300)]
    ob._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page = ob._db.execute("PRAGMA page_size").fetchone()[0]
    leaf_pages = ob._db.execute("SELECT count(*) FROM dbstat WHERE name='outbox' AND pagetype='leaf'").fetchone()[0] \
        if _has_dbstat(ob) else None
    ob.close()
    data = bytearray(path.read_bytes())
    middle = (len(data) // page) // 2
    data[middle * page:(middle + 1) * page] = b"\xde\xad\xbe\xef" * (page // 4)  # one page in the middle
    path.write_bytes(bytes(data))
    alarms = []
    ob = Outbox(path, on_alarm=lambda code, detail: alarms.append((code, detail)))
    assert [a[0] for a in alarms] == ["outbox_corrupt"]
    kept = [r.id for r in ob.due(1000)]
    original = [r.id for r in recs]
    assert set(kept) <= set(original)
    assert recs[0].id in kept and recs[-1].id in kept, "both ends are read"
    assert len(kept) >= 300 - 300 // (leaf_pages or 10) - 20, f"only {len(kept)} salvaged"
    assert f"{len(kept)} records salvaged" in alarms[0][1]
    assert add(ob).seq > recs[-1].seq  # the sequence continues, never reused


def _has_dbstat(ob: Outbox) -> bool:
    try:
        ob._db.execute("SELECT 1 FROM dbstat LIMIT 1")
        return True
    except sqlite3.DatabaseError:
        return False


def test_quick_check_runs_at_open(tmp_path, monkeypatch):
    seen: list[str] = []
    orig = sqlite3.connect

    class Spy(sqlite3.Connection):
        def execute(self, sql, *args):
            seen.append(sql)
            return super().execute(sql, *args)

    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: orig(*a, factory=Spy, **k))
    Outbox(tmp_path / "o.db")
    assert "PRAGMA quick_check" in seen
