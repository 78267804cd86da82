"""The outbox on real SQLite files: durable, bounded without eviction, self-healing on corruption."""
from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from device import machine
from device.model import Staff
from device.outbox import Outbox, OutboxError, OutboxFull
from devkit.waiting import wait_for
from protocol import builders
from protocol.codec import MessageError
from protocol.values import Channel, Level

ORIGIN = builders.Origin("C1", "W01", "dev1")
DRAFT = machine.RatingDraft("staff", Level.SATISFIED, Channel.TOUCH, Staff("S1", "王芳"))


def add(ob: Outbox, draft=DRAFT, case_id=None):
    return ob.add("rating", lambda rid, seq, ts: builders.rating(draft, ORIGIN, rid, seq, ts), case_id=case_id)


def test_pragmas_are_wal_and_full_for_adding(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    assert ob._db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert ob._db.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL: every rating is fsynced
    assert ob._gone.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL: only receipted deletions


def test_committed_rows_survive_reopen_and_sequence_continues_without_a_gap(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    recs = [add(ob) for _ in range(5)]
    ob.delivered([(recs[-1].id, recs[-1].seq)])  # the newest one leaves: its number is still taken
    ob.close()
    ob = Outbox(tmp_path / "o.db")
    assert [r.id for r in ob.due(10)] == [r.id for r in recs[:4]]
    nxt = add(ob)
    assert nxt.seq == 6 and json.loads(nxt.payload)["seq"] == 6  # contiguous across the restart
    ob.delivered([(r.id, r.seq) for r in ob.due(100)])
    ob.close()
    ob = Outbox(tmp_path / "o.db")  # an empty store still continues the sequence
    assert add(ob).seq == 7


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


def _filled(path, n: int) -> tuple[list, list[str]]:
    """An outbox file with n case ratings (and so n rated cases), checkpointed and closed."""
    from device.model import Case
    ob = Outbox(path)
    recs, cases = [], []
    for i in range(n):
        c = Case(f"SH{i:04d}", "i", "n", Staff("S1", "王"), "ap_0123456789", "张*")
        recs.append(add(ob, machine.RatingDraft("case", Level.SATISFIED, Channel.TOUCH, c.staff, c), case_id=c.id))
        cases.append(c.id)
    ob._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    ob.close()
    return recs, cases


def _readable(path, table: str, key: str, keys) -> set:
    """The keys a point lookup can still read from a damaged file: what a salvage can at best recover."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.execute("PRAGMA writable_schema=ON")  # (a truncated file is otherwise refused as a whole)
    found = set()
    for k in keys:
        try:
            if db.execute(f"SELECT 1 FROM {table} WHERE {key}=?", (k,)).fetchone():
                found.add(k)
        except sqlite3.DatabaseError:
            pass
    db.close()
    return found


def _reopened(path) -> tuple[Outbox, list[tuple[str, str]]]:
    alarms: list[tuple[str, str]] = []
    return Outbox(path, on_alarm=lambda code, detail: alarms.append((code, detail))), alarms


def test_a_damaged_page_loses_only_its_own_rows_records_and_rated_cases(tmp_path):
    path = tmp_path / "o.db"
    recs, cases = _filled(path, 300)
    page = 4096
    data = bytearray(path.read_bytes())
    middle = (len(data) // page) // 2
    data[middle * page:(middle + 1) * page] = b"\xde\xad\xbe\xef" * (page // 4)  # one page in the middle
    path.write_bytes(bytes(data))
    seqs = _readable(path, "outbox", "seq", [r.seq for r in recs])
    rated = _readable(path, "rated_cases", "case_id", cases)
    assert len(seqs) < 300 or len(rated) < 300, "the damaged page held rows"
    ob, alarms = _reopened(path)
    assert [a[0] for a in alarms] == ["outbox_corrupt"]
    kept = {r.seq: r.id for r in ob.due(1000)}
    assert set(kept) == seqs, f"lost {sorted(seqs - set(kept))} though readable"  # not one row more
    assert all(kept[r.seq] == r.id for r in recs if r.seq in kept)
    assert {c for c in cases if ob.case_rated(c)} == rated  # the rated-cases memory, too
    assert f"{len(kept)} records salvaged, {len(rated)} rated cases" in alarms[0][1]
    assert add(ob).seq == recs[-1].seq + 1  # the sequence continues, never reused


def test_a_truncated_file_gives_up_every_row_it_still_holds(tmp_path):
    path = tmp_path / "o.db"
    recs, cases = _filled(path, 300)
    data = path.read_bytes()
    path.write_bytes(data[:len(data) * 2 // 3])
    seqs = _readable(path, "outbox", "seq", [r.seq for r in recs])
    rated = _readable(path, "rated_cases", "case_id", cases)
    assert len(seqs) >= 100, "a third of the rows is readable"
    ob, alarms = _reopened(path)
    assert [a[0] for a in alarms] == ["outbox_corrupt"]
    assert {r.seq for r in ob.due(1000)} == seqs
    assert {c for c in cases if ob.case_rated(c)} == rated
    assert add(ob).seq > max(seqs)


def test_a_leftover_moved_aside_file_is_salvaged_once(tmp_path):
    """What an older version left behind: a healthy outbox renamed `*.corrupt-*`, and a new empty store."""
    ob = Outbox(tmp_path / "o.db")
    fresh = add(ob)  # took seq 1, as the old version's fresh store did
    ob.close()
    recs, cases = _filled(tmp_path / "old.db", 3)
    (tmp_path / "old.db").rename(tmp_path / "o.db.corrupt-20261130T010203")
    ob, alarms = _reopened(tmp_path / "o.db")
    assert [a[0] for a in alarms] == ["outbox_salvaged"]
    assert "3 records salvaged, 3 rated cases" in alarms[0][1]
    assert sorted(r.id for r in ob.due(100)) == sorted([fresh.id] + [r.id for r in recs])  # none lost to seq 1
    assert all(ob.case_rated(c) for c in cases)
    assert [p.name for p in tmp_path.glob("o.db.corrupt-*") if not p.name.endswith(("-wal", "-shm"))] \
        == ["o.db.corrupt-20261130T010203.salvaged"]
    ob.close()
    ob, alarms = _reopened(tmp_path / "o.db")
    assert alarms == [] and ob.counts().pending == 4  # not salvaged twice


def test_a_disk_error_at_open_is_no_corruption_nothing_is_moved_aside(tmp_path):
    """The -shm cannot be created (here: a directory is in its way): SQLite says I/O, not corrupt."""
    path = tmp_path / "o.db"
    recs, _ = _filled(path, 3)
    (tmp_path / "o.db-shm").mkdir()
    alarms: list[str] = []
    cleared: list[str] = []
    ob = Outbox(path, on_alarm=lambda code, detail: alarms.append(code), on_clear=cleared.append,
                retry_s=(0.05, 0.1))
    assert alarms == ["outbox_unavailable"] and ob.unavailable.startswith("io:")
    assert not list(tmp_path.glob("o.db.corrupt-*")), "a healthy file was moved aside"
    with pytest.raises(OutboxError) as err:
        add(ob)
    assert err.value.reason == "unavailable"
    (tmp_path / "o.db-shm").rmdir()
    wait_for(lambda: not ob.unavailable, what="opened by the background retry")
    assert cleared == ["outbox_unavailable"]
    assert [r.id for r in ob.due(10)] == [r.id for r in recs]
    assert add(ob).seq == 4


def test_file_modes_are_private(tmp_path):
    path = tmp_path / "data" / "o.db"
    ob = Outbox(path)
    add(ob)
    for suffix in ("", "-wal", "-shm"):
        assert (Path(str(path) + suffix).stat().st_mode & 0o777) == 0o600, suffix
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    ob.close()
    os.chmod(path, 0o644)  # made by an older version
    Outbox(path).close()
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_receipt_by_id_alone_deletes_only_its_own_record(tmp_path):
    ob = Outbox(tmp_path / "o.db")
    recs = [add(ob) for _ in range(5)]
    ob.close()
    ob = Outbox(tmp_path / "o.db")  # after a restart nothing is in flight: receipts match by id alone
    assert ob.delivered([(recs[2].id, None)]) == 1
    assert [r.id for r in ob.due(10)] == [r.id for i, r in enumerate(recs) if i != 2]
    assert ob.delivered([("0195a7e2-3c4d-7a1b-8c2d-3e4f5a6b7c8d", None)]) == 0  # never ours
    assert ob.delivered([("0195a7e2-3c4d-7a1b-8c2d-3e4f5a6b7c8d", recs[0].seq)]) == 0  # a seq with a wrong id
    assert ob.delivered([(recs[2].id, None)]) == 0  # already gone
    assert len(ob.due(10)) == 4 and ob.counts().pending == 4


SEQ_CHILD = """
import sys
sys.path.insert(0, sys.argv[2])
from device.outbox import Outbox
from tests.device.test_outbox import add
ob = Outbox(sys.argv[1])
print("open", flush=True)
while True:
    add(ob)
"""


def test_sequence_has_no_gap_across_clean_restarts_and_kill_9(tmp_path):
    path = tmp_path / "o.db"
    root = str(Path(__file__).resolve().parents[2])
    rnd = random.Random(8)
    for round_ in range(6):
        if round_ % 2:
            ob = Outbox(path)
            for _ in range(rnd.randint(1, 5)):
                add(ob)
            ob.close()
            continue
        child = subprocess.Popen([sys.executable, "-c", SEQ_CHILD, str(path), root], stdout=subprocess.PIPE, text=True)
        assert child.stdout.readline().strip() == "open"
        time.sleep(rnd.uniform(0.05, 0.3))  # adding all the time: the kill lands anywhere in a commit
        child.kill()
        child.wait()
        child.stdout.close()
    ob = Outbox(path)
    add(ob)
    seqs = [r.seq for r in ob.due(1_000_000)]
    assert len(seqs) > 10 and seqs == list(range(1, len(seqs) + 1)), "a gap in the sequence"
    assert [json.loads(r.payload)["seq"] for r in ob.due(1_000_000)] == seqs


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
