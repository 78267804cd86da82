"""Storage faults on a real small filesystem (a tmpfs of a few hundred KiB): a full data partition at
start and during delivery, alarms raised before the link is up, private file modes, stray receipts."""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from center.ledger import Ledger, query
from device.machine import Phase
from devkit.terminals import start_terminal, terminal_config
from devkit.waiting import wait_for
from protocol import topics
from tests.device.test_delivery import rate_cases


class SmallDisk:
    """A tmpfs of `size` mounted under the test's tmp dir; `fill()` takes every free block, `free()` gives it back."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as f:
            for chunk in (65536, 4096, 1):
                while True:
                    try:
                        f.write(b"\0" * chunk)
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def small_disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs to fill (needs root): {r.stderr.strip()}")
    try:
        yield SmallDisk(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_full_disk_at_start_strands_nothing(broker, center, small_disk, tmp_path):
    """The issue's reproduction: three offline ratings, clean stop, fill the disk, start, free, start."""
    cfg = terminal_config(broker.port, small_disk.path / "t", HCP_DEVICE_ID="full1")
    t = start_terminal(cfg, "full1")
    try:
        rate_cases(t, 3, "FD")  # no ledger: nothing is receipted
        wait_for(lambda: t.outbox.counts().pending == 3, what="three ratings committed")
        stored = {r.id for r in t.outbox.due(10)}
    finally:
        t.stop()
    small_disk.fill()
    t = start_terminal(cfg, "full1")  # no exception, no crash loop
    try:
        assert "outbox_unavailable" in t.alarms.active()
        assert not list(cfg_dir(cfg).glob("outbox.db.corrupt-*")), "the healthy outbox was moved aside"
        rate_cases(t, 1, "FDX")
        wait_for(lambda: t.state.phase == Phase.UNAVAILABLE, what="the citizen is told to scan instead")
        wait_for(lambda: [m for m in center.messages_on("event") if m.get("alarm") == "outbox_unavailable"],
                 what="the alarm at the center")
        small_disk.free()
        wait_for(lambda: "outbox_unavailable" not in t.alarms.active(), what="the outbox opens once space is back")
        assert {r.id for r in t.outbox.due(10)} == stored
        assert all(t.outbox.case_rated(f"FD{i:05d}") for i in range(3))  # the rated-cases memory, too
    finally:
        t.stop()
    led = Ledger(tmp_path / "ledger.db", port=broker.port).start()
    t = start_terminal(cfg, "full1")
    try:
        wait_for(lambda: t.outbox.counts().pending == 0, what="delivered after the next start")
        assert {r[0] for r in query(led.db_path, "SELECT id FROM ratings")} == stored
    finally:
        t.stop()
        led.stop()


def cfg_dir(cfg) -> Path:
    return Path(cfg.device.data_dir)


def test_receipts_while_the_disk_is_full_are_done_only_once_the_deletion_commits(broker, small_disk, tmp_path,
                                                                                 caplog):
    cfg = terminal_config(broker.port, small_disk.path / "t", HCP_DEVICE_ID="full2")
    t = start_terminal(cfg, "full2")
    led = None
    try:
        rate_cases(t, 3, "RF")
        wait_for(lambda: t.outbox.counts().pending == 3, what="three ratings committed")
        with t.outbox._lock:  # an empty write-ahead log: any deletion must grow a file
            t.outbox._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        small_disk.fill()
        led = Ledger(tmp_path / "ledger.db", port=broker.port).start()
        wait_for(lambda: query(led.db_path, "SELECT count(*) FROM ratings") == [(3,)], what="stored by the ledger")
        wait_for(lambda: "could not remove" in caplog.text or "courier cycle failed" in caplog.text,
                 what="a receipt whose deletion failed")
        assert t.outbox.counts().pending == 3 and len(t.outbox.due(10)) == 3
        small_disk.free()
        wait_for(lambda: t.outbox.counts().pending == 0, what="receipted records deleted without a restart")
        assert t.outbox.due(10) == []
    finally:
        t.stop()
        if led is not None:
            led.stop()


def test_an_alarm_raised_at_start_is_sent_once_the_link_is_up(center, make_terminal, tmp_path):
    (tmp_path / "t1").mkdir()
    (tmp_path / "t1" / "outbox.db").write_bytes(b"this is not a database" * 100)
    t = make_terminal("t1")
    assert "outbox_corrupt" in t.alarms.active()
    events = wait_for(lambda: [m for m in center.messages_on("event") if m.get("alarm") == "outbox_corrupt"],
                      what="the outbox_corrupt event at the center")
    assert events[0]["device"] == "t1" and "moved to outbox.db.corrupt-" in events[0]["detail"]
    statuses = len(center.messages_on("status"))
    t.link.stop()  # a reconnect does not send it again
    t.link = t._make_link()
    t.link.start()
    wait_for(lambda: len(center.messages_on("status")) > statuses, what="status after the reconnect")
    t.alarms.raise_("test_marker", "raised after the reconnect")  # events after it are in order behind it
    wait_for(lambda: [m for m in center.messages_on("event") if m.get("alarm") == "test_marker"], what="marker")
    assert len([m for m in center.messages_on("event") if m.get("alarm") == "outbox_corrupt"]) == 1


def test_the_data_dir_and_outbox_files_are_private(make_terminal, tmp_path):
    data = tmp_path / "t1"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    t = make_terminal("t1")
    rate_cases(t, 1, "MODE")
    wait_for(lambda: t.outbox.counts().pending == 1, what="committed")
    assert data.stat().st_mode & 0o777 == 0o700
    for name in ("outbox.db", "outbox.db-wal", "outbox.db-shm"):
        assert (data / name).stat().st_mode & 0o777 == 0o600, name


def test_stray_receipts_delete_only_their_own_record(broker, center, make_terminal):
    """At most one record awaits its receipt (window 1): receipts for the others match by id alone."""
    t = make_terminal("t1", HCP_OUTBOX_WINDOW="1")
    rate_cases(t, 4, "STRAY")
    wait_for(lambda: t.outbox.counts().pending == 4, what="committed")
    t.stop()  # after a restart they are backlog, offered one at a time
    t = make_terminal("t1", HCP_OUTBOX_WINDOW="1")
    wait_for(lambda: t.online, what="online")
    recs = t.outbox.due(10)
    receipt = topics.Topics("C1", "W01", "t1").receipt
    center.publish(receipt, {"v": 1, "type": "receipt", "items": [
        {"id": "0195a7e2-3c4d-7a1b-8c2d-3e4f5a6b7c8d", "status": "stored"}]}, retain=False)  # never ours
    center.publish(receipt, {"v": 1, "type": "receipt", "items": [{"id": recs[2].id, "status": "stored"}]},
                   retain=False)
    wait_for(lambda: t.outbox.counts().pending == 3, what="the receipted record deleted")
    assert [r.id for r in t.outbox.due(10)] == [recs[0].id, recs[1].id, recs[3].id]
