"""The power-cut harness (devkit/powercut/): the real outbox, its write log cut at many points, each cut
state rebuilt as a disk would hold it after losing everything not fsynced, and opened again.

Also: the harness catches an outbox that acknowledges before fsync (a test that could not fail would
prove nothing); beyond the model, a drive lying about FLUSH ends in a salvage with an alarm, never a
crash; a power cut during that salvage loses nothing it would keep; the disk model's rules one by one;
the log parser and the replayer under hypothesis."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devkit.powercut import harness
from devkit.powercut.build import build
from devkit.powercut.disk import MODES, Disk
from devkit.powercut.log import HEADER, MAGIC, LogError, Op, Record, encode, parse

CUTS = 200
RATINGS = 500


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return build(tmp_path_factory.mktemp("shim"))


def test_the_log_shows_every_acknowledgement_after_an_fsync_of_the_wal(shim, tmp_path):
    rec = harness.record(tmp_path, ratings=60, seed=7, shim=shim)
    names: dict[int, str] = {}
    synced_since_ack = False
    acks = 0
    for r in rec.records:
        if r.op == Op.OPEN:
            names[r.ino] = r.path
        elif r.op == Op.SYNC and names[r.ino].endswith("-wal"):
            synced_since_ack = True
        elif r.op == Op.MARK and r.path.startswith("A "):
            assert synced_since_ack, f"rating acknowledged without an fsync of the WAL before it: {r.path}"
            synced_since_ack = False
            acks += 1
    assert acks == 60 and len(rec.printed) == 60
    assert any(r.op == Op.DIRSYNC for r in rec.records), "SQLite never fsynced the directory"
    assert {"outbox.db", "outbox.db-wal"} <= set(names.values())


@pytest.fixture
def scratch():
    """Where the cut states are rebuilt and opened: a RAM disk when there is one (the checks' fsyncs are free)."""
    with tempfile.TemporaryDirectory(prefix="powercut-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None) as d:
        yield Path(d)


def test_power_cuts_lose_no_acknowledged_rating(shim, tmp_path, scratch):
    summary, rec = harness.run(tmp_path, cuts=CUTS, ratings=RATINGS, seed=int(os.environ.get("POWERCUT_SEED", "14")),
                               scratch=scratch, shim=shim)
    print(summary.as_figures(), summary.by_mode)
    assert summary.failures == []
    assert summary.cuts == CUTS and summary.lost == 0
    assert summary.opened + summary.salvaged == CUTS
    assert set(summary.by_mode) == set(MODES)
    assert sum(r.op == Op.MARK and r.path.startswith("D ") for r in rec.records) > 10  # receipts happened
    names = {r.ino: r.path for r in rec.records if r.op == Op.OPEN}
    db_syncs = sum(r.op == Op.SYNC and names[r.ino] == "outbox.db" for r in rec.records)
    assert db_syncs >= 3, "fewer than two checkpoints after the store was made: the cuts never met one"


def test_the_harness_catches_an_outbox_that_acknowledges_before_fsync(shim, tmp_path, scratch):
    summary, _ = harness.run(tmp_path, cuts=24, ratings=80, seed=3, weaken="OFF", scratch=scratch, shim=shim)
    assert summary.lost > 0 and summary.failures


def test_beyond_the_model_a_lying_flush_is_salvaged_with_an_alarm_never_a_crash(shim, tmp_path, scratch):
    """A drive that acknowledged a FLUSH it did not do can damage the file: losses are possible then
    (not counted against the outbox), but it must open, salvage with an alarm, and open cleanly again."""
    summary, _ = harness.run(tmp_path, cuts=0, ratings=RATINGS, seed=21, beyond=80, scratch=scratch, shim=shim)
    print(summary)
    assert summary.beyond_cuts == 80 and summary.beyond_failures == []
    assert summary.beyond_salvaged > 0, "no cut reached the salvage path"
    assert summary.beyond_opened + summary.beyond_salvaged == 80


def test_a_power_cut_while_salvaging_loses_nothing_the_salvage_would_keep(shim, tmp_path, scratch):
    """Damaged stores (lying-flush cuts) salvaged under the shim, that log cut within the model: every
    record and rated case the uncut salvage keeps is there after the cut (maybe salvaged again)."""
    s = harness.salvage_run(tmp_path, cuts=90, ratings=RATINGS, seed=31, stores=2, scratch=scratch, shim=shim)
    print(s)
    assert s.damaged_stores == 2 and s.cuts == 90
    assert s.failures == [] and s.lost == 0 and s.opened == 90


# ---- the disk model, rule by rule -----------------------------------------------------------------

O_CREAT = os.O_CREAT | os.O_RDWR


def replay(*records: Record) -> Disk:
    d = Disk()
    for r in records:
        d.apply(r)
    return d


def test_unsynced_writes_are_lost_and_synced_ones_kept():
    d = replay(Record(Op.OPEN, 1, O_CREAT, 0, "f"), Record(Op.DIRSYNC), Record(Op.WRITE, 1, 0, 3, data=b"abc"),
               Record(Op.SYNC, 1), Record(Op.WRITE, 1, 3, 3, data=b"def"))
    rnd = random.Random(1)
    assert d.after_cut("synced", rnd) == {"f": b"abc"}
    assert {d.after_cut("prefix", rnd)["f"] for _ in range(50)} == {b"abc", b"abcdef"}


def test_a_created_file_is_lost_until_its_directory_is_fsynced():
    d = replay(Record(Op.OPEN, 1, O_CREAT, 0, "f"), Record(Op.WRITE, 1, 0, 1, data=b"x"), Record(Op.SYNC, 1))
    assert d.after_cut("synced", random.Random(1)) == {}
    d.apply(Record(Op.DIRSYNC))
    assert d.after_cut("synced", random.Random(1)) == {"f": b"x"}


def test_unlink_and_rename_are_undone_without_a_directory_fsync():
    d = replay(Record(Op.OPEN, 1, O_CREAT, 0, "a"), Record(Op.OPEN, 2, O_CREAT, 0, "b"), Record(Op.DIRSYNC),
               Record(Op.UNLINK, path="a"), Record(Op.RENAME, path="b\0c"))
    assert set(d.after_cut("synced", random.Random(1))) == {"a", "b"}
    seen = {frozenset(d.after_cut("prefix", random.Random(s))) for s in range(60)}
    assert seen == {frozenset("ab"), frozenset("b"), frozenset("c")}  # in order: never c while a is back
    d.apply(Record(Op.DIRSYNC))
    assert set(d.after_cut("synced", random.Random(1))) == {"c"}


def test_torn_pages_come_from_before_or_after_and_unwritten_extension_reads_zeros():
    old, new = b"o" * 8192, b"n" * 12288
    d = replay(Record(Op.OPEN, 1, O_CREAT, 0, "f"), Record(Op.DIRSYNC), Record(Op.WRITE, 1, 0, 8192, data=old),
               Record(Op.SYNC, 1), Record(Op.WRITE, 1, 0, 12288, data=new))
    seen = set()
    for s in range(80):
        got = d.after_cut("pages", random.Random(s))["f"]
        assert len(got) in (8192, 12288)
        blocks = [got[i:i + 4096] for i in range(0, len(got), 4096)]
        assert blocks[:2] and all(b in (b"o" * 4096, b"n" * 4096) for b in blocks[:2])
        assert all(b in (b"n" * 4096, bytes(4096)) for b in blocks[2:])
        seen.add(got)
    assert len(seen) > 4


def test_a_lying_flush_takes_back_the_last_sync_of_one_file():
    d = replay(Record(Op.OPEN, 1, O_CREAT, 0, "f"), Record(Op.DIRSYNC), Record(Op.WRITE, 1, 0, 4, data=b"one1"),
               Record(Op.SYNC, 1), Record(Op.WRITE, 1, 0, 8, data=b"two2two2"), Record(Op.TRUNC, 1, 0, 6),
               Record(Op.SYNC, 1))
    assert d.after_cut("synced", random.Random(1)) == {"f": b"two2tw"}
    seen = {d.after_cut("lost_flush", random.Random(s))["f"] for s in range(40)}
    # one 4 KiB block, from before the last sync or after it; the size before or after it
    assert seen == {b"one1", b"two2tw", b"two2", b"one1\0\0"}


def test_an_inode_number_reused_after_unlink_is_a_new_file():
    d = replay(Record(Op.OPEN, 5, O_CREAT, 0, "j"), Record(Op.WRITE, 5, 0, 1, data=b"J"), Record(Op.SYNC, 5),
               Record(Op.DIRSYNC), Record(Op.UNLINK, path="j"), Record(Op.OPEN, 5, O_CREAT, 0, "w"),
               Record(Op.SYNC, 5), Record(Op.DIRSYNC))
    assert d.after_cut("synced", random.Random(1)) == {"w": b""}


def test_the_replayer_refuses_a_log_that_contradicts_itself():
    with pytest.raises(LogError, match="never created"):
        replay(Record(Op.OPEN, 1, os.O_RDWR, 0, "f"))
    with pytest.raises(LogError, match="never opened"):
        replay(Record(Op.WRITE, 9, 0, 1, data=b"x"))
    with pytest.raises(LogError, match="does not exist"):
        replay(Record(Op.UNLINK, path="nope"))


# ---- the log parser under hypothesis ---------------------------------------------------------------

names = st.text(st.characters(blacklist_characters="/\0", blacklist_categories=("Cs",)), min_size=1, max_size=20)
records = st.one_of(
    st.builds(lambda ino, flags, p: Record(Op.OPEN, ino, flags, 0, p), st.integers(0, 2**64 - 1),
              st.integers(0, 2**20), names),
    st.builds(lambda ino, off, d: Record(Op.WRITE, ino, off, len(d), "", d), st.integers(0, 2**64 - 1),
              st.integers(0, 2**40), st.binary(max_size=64)),
    st.builds(lambda ino, n: Record(Op.TRUNC, ino, 0, n), st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    st.builds(lambda ino: Record(Op.SYNC, ino), st.integers(0, 2**64 - 1)),
    st.just(Record(Op.DIRSYNC)),
    st.builds(lambda a, b: Record(Op.RENAME, path=f"{a}\0{b}"), names, names),
    st.builds(lambda p: Record(Op.UNLINK, path=p), names),
    st.builds(lambda t: Record(Op.MARK, path=t), st.text(max_size=40)),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(records, max_size=20))
def test_the_parser_reads_back_what_the_shim_writes(recs):
    assert parse(b"".join(encode(r) for r in recs)) == recs


@settings(max_examples=100, deadline=None)
@given(st.lists(records, min_size=1, max_size=10), st.data())
def test_a_log_cut_inside_its_last_record_parses_as_the_records_before(recs, data):
    blobs = [encode(r) for r in recs]
    cut = data.draw(st.integers(1, len(blobs[-1]) - 1))
    buf = b"".join(blobs[:-1]) + blobs[-1][:cut]
    assert parse(buf) == recs[:-1]
    with pytest.raises(LogError):
        parse(buf, strict_tail=True)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200), st.lists(records, max_size=5))
def test_garbage_is_refused_with_log_error_never_anything_else(junk, recs):
    for buf in (junk, bytes([MAGIC]) + junk, b"".join(encode(r) for r in recs) + junk):
        try:
            parsed = parse(buf)
        except LogError:
            continue
        d = Disk()
        for r in parsed:
            try:
                d.apply(r)
            except LogError:
                break
        d.after_cut(MODES[len(buf) % len(MODES)], random.Random(len(buf)))


def test_a_bad_header_names_where_it_is():
    good = encode(Record(Op.DIRSYNC))
    with pytest.raises(LogError, match="magic 0x00 at byte 30"):
        parse(good + bytes(HEADER.size))
    with pytest.raises(LogError, match="unknown op 99 at byte 0"):
        parse(HEADER.pack(MAGIC, 99, 0, 0, 0, 0))


@st.composite
def histories(draw):
    """A valid log over three names, and the directory as the running process saw it at the end."""
    seen: dict[str, bytearray] = {}
    ino_of: dict[str, int] = {}
    recs: list[Record] = []
    next_ino = 1
    for _ in range(draw(st.integers(0, 30))):
        kind = draw(st.sampled_from(["open", "write", "trunc", "sync", "dirsync", "rename", "unlink"]))
        name = draw(st.sampled_from("abc"))
        if kind == "open" and name not in seen:
            ino_of[name], next_ino = next_ino, next_ino + 1
            seen[name] = bytearray()
            recs.append(Record(Op.OPEN, ino_of[name], O_CREAT, 0, name))
        elif kind == "write" and name in seen:
            off, data = draw(st.integers(0, 9000)), draw(st.binary(min_size=1, max_size=5000))
            buf = seen[name]
            buf.extend(bytes(max(0, off - len(buf))))
            buf[off:off + len(data)] = data
            recs.append(Record(Op.WRITE, ino_of[name], off, len(data), "", data))
        elif kind == "trunc" and name in seen:
            size = draw(st.integers(0, 9000))
            del seen[name][size:]
            seen[name].extend(bytes(size - len(seen[name])))
            recs.append(Record(Op.TRUNC, ino_of[name], 0, size))
        elif kind == "sync" and name in seen:
            recs.append(Record(Op.SYNC, ino_of[name]))
        elif kind == "dirsync":
            recs.append(Record(Op.DIRSYNC))
        elif kind == "rename" and name in seen:
            new = draw(st.sampled_from([n for n in "abc" if n != name]))
            seen[new], ino_of[new] = seen.pop(name), ino_of.pop(name)
            recs.append(Record(Op.RENAME, path=f"{name}\0{new}"))
        elif kind == "unlink" and name in seen:
            del seen[name], ino_of[name]
            recs.append(Record(Op.UNLINK, path=name))
    return recs, ino_of, {n: bytes(b) for n, b in seen.items()}


@settings(max_examples=100, deadline=None)
@given(histories(), st.integers(0, 2**32))
def test_a_cut_after_everything_was_synced_loses_nothing_and_before_keeps_only_what_was_written(h, seed):
    recs, ino_of, final = h
    d = Disk()
    for r in recs:
        d.apply(r)
    for mode in MODES:  # before the final syncs: every file is one the log made, no longer than it got
        for name, data in d.after_cut(mode, random.Random(seed)).items():
            assert name in "abc" and len(data) <= 9000 + 5000
    for name in final:
        d.apply(Record(Op.SYNC, ino_of[name]))
    d.apply(Record(Op.DIRSYNC))
    for mode in MODES:
        assert d.after_cut(mode, random.Random(seed)) == final
