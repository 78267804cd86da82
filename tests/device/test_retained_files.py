"""The retained inputs a terminal keeps on its data partition (catalog, duty, config), on a real filesystem."""
from __future__ import annotations

from device import inputs
from device.alarms import Alarms
from device.config import load
from devkit import factories


def test_a_retained_message_received_again_is_not_written_again(tmp_path):
    alarms = Alarms()
    duty = factories.duty("C1", "W01")
    inputs.save_retained(tmp_path, "duty", duty, alarms)
    path = tmp_path / "duty.json"
    first = path.stat()
    inputs.save_retained(tmp_path, "duty", duty, alarms)  # the broker hands it over at every reconnect
    assert path.stat().st_ino == first.st_ino and path.stat().st_mtime_ns == first.st_mtime_ns
    changed = factories.duty("C1", "W01", staff=factories.STAFF[1])
    inputs.save_retained(tmp_path, "duty", changed, alarms)
    assert path.stat().st_ino != first.st_ino  # a new message: replaced atomically (a new file renamed over)
    cfg = load([], env={"HCP_CENTER_WINDOW": "W01", "HCP_CENTER_ID": "C1"})
    assert inputs.load_retained(tmp_path, cfg) == [("duty", changed)]
    assert path.stat().st_mode & 0o777 == 0o600
    assert not alarms.active()


def test_an_unreadable_saved_file_is_written_anew(tmp_path):
    alarms = Alarms()
    (tmp_path / "catalog.json").write_bytes(b"\xff not json")
    catalog = factories.catalog("C1")
    inputs.save_retained(tmp_path, "catalog", catalog, alarms)
    cfg = load([], env={"HCP_CENTER_WINDOW": "W01", "HCP_CENTER_ID": "C1"})
    assert inputs.load_retained(tmp_path, cfg) == [("catalog", catalog)]
