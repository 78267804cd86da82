"""device.identity: the id a terminal announces and enrols with must not change between boots."""
from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from device import identity


def board(tmp_path, *, serial: bytes | None = None, machine_id: str | None = None):
    root = tmp_path / "root"
    if serial is not None:
        (root / "proc/device-tree").mkdir(parents=True, exist_ok=True)
        (root / "proc/device-tree/serial-number").write_bytes(serial)
    if machine_id is not None:
        (root / "etc").mkdir(parents=True, exist_ok=True)
        (root / "etc/machine-id").write_text(machine_id + "\n")
    root.mkdir(exist_ok=True)
    return root


def test_configured_wins(tmp_path):
    assert identity.device_id("t-7", board(tmp_path, serial=b"10000000abcdef12\0")) == "t-7"


def test_a_pi_serial_is_the_id_and_nothing_is_written(tmp_path):
    data = tmp_path / "data"
    assert identity.device_id("", board(tmp_path, serial=b"10000000abcdef12\0"), data) == "rpi-10000000abcdef12"
    assert not data.exists()


def test_the_machine_id_is_hashed_never_shown(tmp_path):
    mid = "0123456789abcdef0123456789abcdef"
    got = identity.device_id("", board(tmp_path, machine_id=mid))
    assert got.startswith("m-") and len(got) == 18 and mid[:8] not in got


def test_a_read_only_root_makes_a_new_machine_id_each_boot_the_kept_id_stays(tmp_path):
    """The image's case: /etc/machine-id is transient (read-only root), the data partition persists."""
    data = tmp_path / "data"
    first = identity.device_id("", board(tmp_path / "boot1", machine_id="aa" * 16), data)
    assert (data / identity.KEPT).read_text().strip() == first
    assert (data / identity.KEPT).stat().st_mode & 0o777 == 0o600
    second = identity.device_id("", board(tmp_path / "boot2", machine_id="bb" * 16), data)
    assert second == first, "a new machine id at the next boot does not change the device id"
    # without the data directory the new machine id would have meant a new device (and a new enrolment)
    assert identity.device_id("", board(tmp_path / "boot3", machine_id="bb" * 16)) != first


@pytest.mark.parametrize("junk", ["", "hello", "m-XYZ", "m-0123", "rpi-1234567890abcdef", "m-0123456789abcdef0"])
def test_a_damaged_kept_id_is_made_again(tmp_path, junk):
    data = tmp_path / "data"
    data.mkdir()
    (data / identity.KEPT).write_text(junk)
    got = identity.device_id("", board(tmp_path, machine_id="cc" * 16), data)
    assert identity.KEPT_ID.fullmatch(got)
    assert (data / identity.KEPT).read_text().strip() == got


def test_a_data_dir_that_cannot_be_written_still_gives_an_id(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    got = identity.device_id("", board(tmp_path, machine_id="dd" * 16), blocker / "data")
    assert identity.KEPT_ID.fullmatch(got)
    assert "cannot keep the device id" in caplog.text


def test_no_serial_no_machine_id_is_named(tmp_path):
    with pytest.raises(RuntimeError, match="set \\[device\\] id"):
        identity.device_id("", board(tmp_path), tmp_path / "data")


@given(st.binary(max_size=40))
def test_any_serial_file_gives_an_id_or_falls_back(serial):
    import tempfile
    from pathlib import Path
    with tempfile.TemporaryDirectory() as d:
        got = identity.device_id("", board(Path(d), serial=serial, machine_id="ee" * 16))
        assert got.startswith(("rpi-", "m-")) and got.isascii() and got.isprintable()
