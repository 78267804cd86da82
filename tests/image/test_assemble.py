"""The assembler (image-build/rtimage/assemble.py, manifest.py) on a synthetic image: partition table,
labels, FAT and ext4 contents with owners and modes, fsck, reproducibility, the published artifacts
flashed back with bmaptool."""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from rtimage import layout
from rtimage.assemble import AssembleError, Entry, assemble, read_owners
from rtimage.manifest import publish, wheel_entry

from .conftest import BOOT_MIB, DATA_OWNERS, EPOCH, KERNEL, ROOT_OWNERS, ROOTFS, make_boot_tree, make_root_tree

MIB = 1024 * 1024


def sh(*cmd: str, input: str | None = None) -> str:
    return subprocess.run(list(cmd), check=True, capture_output=True, text=True, input=input).stdout


def part_spec(info, label: str) -> str:
    return f"{info.path}?offset={info.part(label).start}"


def debugfs(info, label: str, request: str) -> str:
    return sh("debugfs", "-R", request, part_spec(info, label))


def mtools(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True,
                          env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout


def test_partition_table_is_mbr_with_three_aligned_partitions(synthetic):
    info = synthetic[2]
    table = json.loads(sh("sfdisk", "-J", str(info.path)))["partitiontable"]
    assert table["label"] == "dos" and table["id"] == "0x52544931" == info.disk_id
    parts = table["partitions"]
    assert [p["type"] for p in parts] == ["c", "83", "83"]
    assert [p["start"] * 512 for p in parts] == [p.start for p in info.partitions]
    for p in parts:
        assert (p["start"] * 512) % (4 * MIB) == 0
    assert parts[0]["size"] * 512 == BOOT_MIB * MIB and parts[2]["size"] * 512 == layout.DATA_MIB * MIB
    # p2 follows p1, and p3 ends the image (first boot grows it to the card's end)
    assert parts[1]["start"] * 512 >= parts[0]["start"] * 512 + BOOT_MIB * MIB
    assert (parts[2]["start"] + parts[2]["size"]) * 512 == info.size == info.path.stat().st_size
    assert info.path.stat().st_blocks * 512 < info.size / 10, "the raw image should be sparse"


def test_labels_and_uuids(synthetic):
    info = synthetic[2]
    fat = mtools("mlabel", "-s", "-i", f"{info.path}@@{info.part('RTBOOT').start}", "::")
    assert "RTBOOT" in fat
    for label, uuid in (("RTROOT", layout.ROOT_UUID), ("RTDATA", layout.DATA_UUID)):
        head = sh("dumpe2fs", "-h", part_spec(info, label))
        assert re.search(rf"Filesystem volume name:\s+{label}\n", head)
        assert re.search(rf"Filesystem UUID:\s+{uuid}\n", head)


def test_boot_partition_holds_the_boot_tree(synthetic):
    boot, _, info = synthetic
    spec = f"{info.path}@@{info.part('RTBOOT').start}"
    names = sorted(Path(p).name for p in mtools("mdir", "-b", "-/", "-i", spec, "::/").split())
    assert names == sorted(p.name for p in boot.rglob("*"))
    cmdline = mtools("mtype", "-i", spec, "::/cmdline.txt")
    assert cmdline == layout.cmdline() and cmdline.count("\n") == 1
    for word in ("console=tty3", "quiet", "loglevel=3", "vt.global_cursor_default=0", "rtroot=overlay",
                 "root=LABEL=RTROOT", " ro "):
        assert word in cmdline
    kernel = subprocess.run(["mtype", "-i", spec, "::/vmlinuz"], check=True, capture_output=True,
                            env={**os.environ, "MTOOLS_SKIP_CHECK": "1"}).stdout
    assert kernel == KERNEL
    assert "vc4-kms-v3d.dtbo" in mtools("mdir", "-b", "-i", spec, "::/overlays")


def ls(info, label: str, path: str) -> set[str]:
    """Names in a directory of an ext4 partition (debugfs `ls -p`: /inode/mode/uid/gid/name/size/)."""
    return {line.split("/")[5] for line in debugfs(info, label, f'ls -p "{path}"').splitlines() if line.startswith("/")}


def stat_of(info, label: str, path: str) -> dict:
    out = debugfs(info, label, f'stat "{path}"')
    m = re.search(r"Type: (\w+)\s+Mode:\s+(\d+).*?User:\s+(\d+)\s+Group:\s+(\d+)", out, re.S)
    assert m, out
    return {"type": m[1], "mode": int(m[2], 8), "uid": int(m[3]), "gid": int(m[4]),
            "mtime": int(re.search(r"mtime: (0x[0-9a-f]+)", out)[1], 16),
            "ctime": int(re.search(r"ctime: (0x[0-9a-f]+)", out)[1], 16)}


def test_root_partition_holds_the_overlay_files_with_owners_and_modes(synthetic):
    _, root, info = synthetic
    assert debugfs(info, "RTROOT", "cat /etc/fstab") == (ROOTFS / "etc/fstab").read_text()
    unit = debugfs(info, "RTROOT", "cat /etc/systemd/system/rating-terminal-ui.service")
    assert "ExecStart=/usr/lib/rating-terminal/launch" in unit
    s = stat_of(info, "RTROOT", "/usr/lib/rating-terminal/site-apply")
    assert (s["type"], s["mode"], s["uid"], s["gid"]) == ("regular", 0o755, 0, 0)
    s = stat_of(info, "RTROOT", "/etc/ssh/sshd_config.d/50-rating-terminal.conf")
    assert (s["mode"], s["uid"]) == (0o600, 0)
    s = stat_of(info, "RTROOT", "/etc/initramfs-tools/scripts/init-bottom/rtroot")
    assert s["mode"] & 0o111 == 0o111, "initramfs scripts must be executable"
    s = stat_of(info, "RTROOT", "/var/lib/rating-terminal")
    assert (s["type"], s["mode"], s["uid"], s["gid"]) == ("directory", 0o750, 990, 990)
    # timestamps: nothing newer than the build's epoch (mke2fs -d copies ctime from the tree)
    assert s["ctime"] == EPOCH and s["mtime"] <= EPOCH
    # the mount points are empty in p2: their contents live on p1 and p3
    assert ls(info, "RTROOT", "/boot/firmware") == {".", ".."}
    assert ls(info, "RTROOT", "/var/lib/rating-terminal") == {".", ".."}


def test_data_partition_is_empty_ext4_owned_by_the_kiosk_user(synthetic):
    info = synthetic[2]
    s = stat_of(info, "RTDATA", "/")
    assert (s["type"], s["mode"], s["uid"], s["gid"]) == ("directory", 0o750, 990, 990)
    assert ls(info, "RTDATA", "/") == {".", "..", "lost+found"}
    assert "Reserved block count" in sh("dumpe2fs", "-h", part_spec(info, "RTDATA"))


@pytest.mark.parametrize("label", ["RTROOT", "RTDATA"])
def test_ext4_partitions_pass_fsck(synthetic, label):
    done = subprocess.run(["e2fsck", "-fn", part_spec(synthetic[2], label)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_same_inputs_give_the_same_image_bytes(synthetic, tmp_path):
    # a second tree made afresh (other inode numbers, ctimes and creation order) gives identical bytes
    boot = make_boot_tree(tmp_path / "boot")
    root = make_root_tree(tmp_path / "root")
    os.utime(root / "etc/fstab", (EPOCH + 10**6, EPOCH + 10**6))  # newer than the epoch: clamped
    info = assemble(boot, root, tmp_path / "again.img", root_owners=ROOT_OWNERS, data_owners=DATA_OWNERS, epoch=EPOCH)
    again = assemble(boot, root, tmp_path / "again2.img", root_owners=ROOT_OWNERS, data_owners=DATA_OWNERS,
                     epoch=EPOCH)
    assert info.part("RTBOOT").size == layout.BOOT_MIB * MIB  # the default size
    assert sha(info.path) == sha(again.path)
    first = assemble(synthetic[0], synthetic[1], tmp_path / "first.img", root_owners=ROOT_OWNERS,
                     data_owners=DATA_OWNERS, epoch=EPOCH, boot_mib=BOOT_MIB)
    assert sha(first.path) == sha(synthetic[2].path)
    assert stat_of(info, "RTROOT", "/etc/fstab")["mtime"] == EPOCH


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_publish_writes_xz_bmap_checksum_and_manifest_that_flash_back(synthetic, tmp_path):
    raw = tmp_path / "raw.img"
    subprocess.run(["cp", "--sparse=always", str(synthetic[2].path), str(raw)], check=True)
    raw_sum = sha(raw)
    wheel = tmp_path / "paho_mqtt-2.1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK fake wheel")
    arts = publish(raw, tmp_path / "out", version="0.9.1",
                   packages=[("systemd", "252.38-1~deb12u1", "arm64"), ("python3", "3.11.2-1+b1", "arm64")],
                   wheels=[wheel, ("kivy", "2.3.1")], extra={"build_seconds": 12})
    assert arts.img_xz.name == "rating-terminal-0.9.1-arm64.img.xz" and not raw.exists()
    assert arts.bmap.name == "rating-terminal-0.9.1-arm64.bmap"
    subprocess.run(["sha256sum", "-c", arts.sha256.name], cwd=arts.sha256.parent, check=True, capture_output=True)
    doc = json.loads(arts.manifest.read_text())
    assert doc["version"] == "0.9.1" and doc["raw"]["sha256"] == raw_sum and doc["build_seconds"] == 12
    assert doc["image"]["sha256"] == sha(arts.img_xz) and doc["image"]["size"] == arts.size_xz
    assert [p["name"] for p in doc["packages"]] == ["python3", "systemd"]
    assert {w["name"]: w["version"] for w in doc["wheels"]} == {"kivy": "2.3.1", "paho-mqtt": "2.1.0"}
    assert [p["start"] for p in doc["partitions"]] == [p.start for p in synthetic[2].partitions]

    # the bmap parses, says the image's size and maps every byte that is not a hole
    bmap = ET.parse(arts.bmap).getroot()
    block = int(bmap.findtext("BlockSize"))
    assert int(bmap.findtext("ImageSize")) == arts.size_raw == synthetic[2].size
    ranges = []
    for r in bmap.find("BlockMap"):
        lo, _, hi = r.text.strip().partition("-")
        ranges.append((int(lo) * block, (int(hi or lo) + 1) * block))
    with open(synthetic[2].path, "rb") as img:
        for start, end in data_extents(synthetic[2].path):
            for pos in range(start, end, block):
                img.seek(pos)
                if img.read(block).strip(b"\0"):
                    assert covered(pos, pos + block, ranges), pos

    # a technician's flash: bmaptool copy of the .img.xz onto a "card" gives the raw image back
    card = tmp_path / "card.img"
    subprocess.run(["bmaptool", "-q", "copy", str(arts.img_xz), str(card)], check=True, capture_output=True)
    assert sha(card) == raw_sum


def covered(start: int, end: int, ranges: list[tuple[int, int]]) -> bool:
    pos = start
    for lo, hi in sorted(ranges):
        if lo <= pos < hi:
            pos = hi
        if pos >= end:
            return True
    return False


def data_extents(path: Path) -> list[tuple[int, int]]:
    """(start, end) of the data (non-hole) regions of a sparse file."""
    out, fd = [], os.open(path, os.O_RDONLY)
    try:
        size, pos = os.fstat(fd).st_size, 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out


def test_a_root_tree_with_files_in_a_mount_point_is_refused(tmp_path):
    boot = make_boot_tree(tmp_path / "boot")
    root = make_root_tree(tmp_path / "root")
    (root / "boot/firmware/vmlinuz").write_bytes(b"x")
    with pytest.raises(AssembleError, match=r"boot/firmware: must be empty"):
        assemble(boot, root, tmp_path / "x.img")


def test_the_roots_own_boot_firmware_can_be_the_boot_tree(tmp_path):
    """What the real build does: raspi-firmware's hooks fill root/boot/firmware, which becomes p1 while p2
    keeps only the empty mount point; the root tree is left as it was."""
    root = make_root_tree(tmp_path / "root")
    shutil.rmtree(root / "boot/firmware")
    make_boot_tree(root / "boot/firmware")
    before = sorted(p.name for p in (root / "boot/firmware").rglob("*"))
    info = assemble(root / "boot/firmware", root, tmp_path / "x.img", epoch=EPOCH)
    assert ls(info, "RTROOT", "/boot/firmware") == {".", ".."}
    assert "vmlinuz" in mtools("mdir", "-b", "-i", f"{info.path}@@{info.part('RTBOOT').start}", "::/")
    assert sorted(p.name for p in (root / "boot/firmware").rglob("*")) == before
    assert not list((root / "boot").glob(".*aside"))


def test_a_symlink_in_the_boot_tree_and_a_missing_owner_path_are_refused(tmp_path):
    boot = make_boot_tree(tmp_path / "boot")
    root = make_root_tree(tmp_path / "root")
    with pytest.raises(AssembleError, match=r"owners: /no/such is not in"):
        assemble(boot, root, tmp_path / "x.img", root_owners=[Entry("/no/such", 0, 0, 0o644)])
    (boot / "link").symlink_to("vmlinuz")
    with pytest.raises(AssembleError, match=r"link: only regular files"):
        assemble(boot, root, tmp_path / "y.img")


def test_owners_file_format(tmp_path):
    f = tmp_path / "owners"
    f.write_text("# path uid gid mode\n/var/lib/rating-terminal 990 990 0750\n\n/etc/x 0 0 600  # secret\n")
    assert read_owners(f) == [Entry("/var/lib/rating-terminal", 990, 990, 0o750), Entry("/etc/x", 0, 0, 0o600)]
    f.write_text("/etc/x 0 0 rw-r--r--\n")
    with pytest.raises(AssembleError, match=r"owners:1: expected 'PATH UID GID MODE'"):
        read_owners(f)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=120))
def test_owners_parser_never_crashes(text):
    with tempfile.NamedTemporaryFile("w", suffix=".owners", delete=False) as f:
        f.write(text)
    try:
        entries = read_owners(Path(f.name))
    except AssembleError as e:
        assert f.name in str(e)
    except UnicodeEncodeError:
        pass
    else:
        assert all(isinstance(e.mode, int) for e in entries)
    finally:
        os.unlink(f.name)


@given(st.from_regex(r"[a-z][a-z0-9_]{0,10}-[0-9]{1,3}(\.[0-9]{1,3}){0,2}-(py3|cp311)-(none|cp311)-(any|manylinux2014_aarch64)\.whl",
                     fullmatch=True))
def test_wheel_names_parse(name):
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / name
        p.write_bytes(b"w")
        entry = wheel_entry(p)
    assert name.startswith(entry["name"].replace("-", "_") + "-" + entry["version"] + "-")
