"""Write the center's enrolment file and the site settings onto a card's FAT boot partition, without root
and without mounting: mtools at the partition's offset inside an image file or a block device, or plain
copies into a mounted boot directory. Works on this project's image (p1 `RTBOOT`) and on a stock
Raspberry Pi OS image (p1 `bootfs`).
"""
from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rtimage import layout

FAT_TYPES = {"1", "4", "6", "b", "c", "e", "ef",     # MBR type ids of FAT partitions (and the EFI one)
             "ebd0a0a2-b9e5-4433-87c0-68b6b7260599",  # GPT: Microsoft basic data (a Pi 4/5 boots GPT too)
             "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"}  # GPT: EFI system partition
BOOT_LABELS = ("RTBOOT", "BOOTFS", "BOOT", "RASPIFIRM")  # this image, Pi OS, older Pi OS, Debian's raspi images
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLSRC": os.devnull, "TZ": "UTC"}
FILES = (layout.ENROLMENT_NAME, layout.SETTINGS_NAME)


class StampError(Exception):
    """What is wrong with the target, said so a technician can act on it."""


@dataclass(frozen=True)
class BootPartition:
    target: Path      # the image file or block device
    offset: int       # bytes
    label: str
    number: int       # partition number (0: the target is a bare FAT file system)

    @property
    def spec(self) -> str:
        return f"{self.target}@@{self.offset}"


def mtool(*args: str, input: bytes | None = None) -> bytes:
    try:
        done = subprocess.run(list(args), capture_output=True, input=input, env={**os.environ, **MTOOLS_ENV})
    except FileNotFoundError:
        raise StampError(f"{args[0]}: not installed (Debian/Ubuntu: apt install mtools)") from None
    if done.returncode != 0:
        raise StampError(f"{' '.join(args)}: {done.stderr.decode(errors='replace').strip() or done.returncode}")
    return done.stdout


def looks_fat(target: Path, offset: int) -> bool:
    """A FAT boot sector at `offset`: the 0x55AA signature and a FAT type string."""
    try:
        with open(target, "rb") as f:
            f.seek(offset)
            sector = f.read(512)
    except OSError:
        return False
    return len(sector) == 512 and sector[510:512] == b"\x55\xaa" and (
        sector[0x52:0x57] == b"FAT32" or sector[0x36:0x39] == b"FAT")


def volume_label(target: Path, offset: int) -> str:
    out = mtool("mlabel", "-s", "-i", f"{target}@@{offset}", "::").decode(errors="replace")
    return out.split("is", 1)[1].strip() if " is " in out else ""


def check_target(target: Path) -> None:
    name = target.name.lower()
    if name.endswith((".xz", ".gz", ".zst", ".zip", ".bz2")):
        raw = target.name.rsplit(".", 1)[0]
        tool = {"xz": "xz -dk", "gz": "gzip -dk", "zst": "zstd -d", "zip": "unzip", "bz2": "bzip2 -dk"}[name.rsplit(".", 1)[1]]
        raise StampError(f"{target}: compressed; decompress it first (`{tool} {target}`), stamp {raw}, "
                         f"then flash that (bmaptool copy {raw} /dev/sdX)")
    if not target.exists():
        raise StampError(f"{target}: no such image or device")
    mode = target.stat().st_mode
    if not (stat.S_ISREG(mode) or stat.S_ISBLK(mode)):
        raise StampError(f"{target}: neither an image file nor a block device (a mounted boot directory: --boot-dir)")
    if stat.S_ISBLK(mode):
        mounted = mounted_parts(target)
        if mounted:
            raise StampError(f"{target}: {', '.join(mounted)} mounted; unmount it first (`udisksctl unmount -b …`) "
                             f"or stamp the mounted boot directory with --boot-dir")


def mounted_parts(device: Path) -> list[str]:
    """Which of the device's nodes (itself or its partitions) /proc/mounts lists."""
    real = os.path.realpath(device)
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return []
    return sorted({w[0] for w in (line.split() for line in lines) if w and os.path.realpath(w[0]).startswith(real)})


def find_boot(target: Path) -> BootPartition:
    """The FAT boot partition of an image or device (labelled RTBOOT/bootfs first, else the first FAT one),
    or the target itself when it is a bare FAT file system."""
    target = Path(target)
    check_target(target)
    done = subprocess.run(["sfdisk", "-J", str(target)], capture_output=True, text=True)
    table = json.loads(done.stdout)["partitiontable"] if done.returncode == 0 else {}
    parts = table.get("partitions", [])
    if not parts:
        if looks_fat(target, 0):
            return BootPartition(target, 0, volume_label(target, 0), 0)
        raise StampError(f"{target}: no partition table and no FAT file system: not an SD-card image")
    unit = int(table.get("sectorsize") or 512)  # 4096 on a 4Kn disk
    candidates = []
    for n, p in enumerate(parts, 1):
        offset = p["start"] * unit
        if p.get("type", "").lower().lstrip("0") in FAT_TYPES and looks_fat(target, offset):
            candidates.append(BootPartition(target, offset, volume_label(target, offset), n))
    if not candidates:
        raise StampError(f"{target}: none of its {len(parts)} partitions is a FAT boot partition "
                         f"(types: {', '.join(p.get('type', '?') for p in parts)})")
    return next((c for c in candidates if c.label.upper() in BOOT_LABELS), candidates[0])


def space(boot: BootPartition, names) -> tuple[int, int, dict[str, int]]:
    """(cluster bytes, free bytes, size of each of `names` already there) of the FAT partition."""
    info = mtool("minfo", "-i", boot.spec, "::").decode(errors="replace")
    sector = re.search(r"sector size: (\d+) bytes", info)
    per = re.search(r"cluster size: (\d+) sectors", info)
    cluster = int(sector[1]) * int(per[1]) if sector and per else 512
    listing = mtool("mdir", "-i", boot.spec, "::/").decode(errors="replace")
    free = re.search(r"([\d ]+) bytes free", listing)
    sizes = {}
    for line in listing.splitlines():
        m = re.match(r".*?\s(\d+)\s+\d{4}-\d\d-\d\d\s+\d+:\d\d\s+(\S+)\s*$", line)
        if m and m[2].lower() in {n.lower() for n in names}:
            sizes[m[2].lower()] = int(m[1])
    return cluster, int(free[1].replace(" ", "")) if free else 0, sizes


def write_files(boot: BootPartition, files: dict[str, bytes]) -> None:
    """Copy the files in; refused before anything is written when they would not fit, and read back after:
    mcopy truncates a file on a full FAT and still exits 0."""
    cluster, free, sizes = space(boot, files)
    clusters = lambda n: -(-n // cluster) * cluster  # noqa: E731
    need = sum(clusters(len(d)) for d in files.values()) - sum(clusters(n) for n in sizes.values())
    if need > free:
        raise StampError(f"{boot.target}: partition {boot.number} ({boot.label or 'FAT'}) has {free} bytes free, "
                         f"the files need {need} more: nothing written (remove something from it first)")
    for name, data in files.items():
        mtool("mcopy", "-o", "-i", boot.spec, "-", f"::/{name}", input=data)
    for name, data in files.items():
        if mtool("mtype", "-i", boot.spec, f"::/{name}") != data:
            raise StampError(f"{boot.target}: {name} did not read back as written (partition {boot.number} full "
                             f"or failing): stamp again after freeing space, or use another card")


def read_files(boot: BootPartition) -> dict[str, bytes | None]:
    listing = mtool("mdir", "-b", "-i", boot.spec, "::/").decode(errors="replace").split()
    present = {Path(p).name.lower() for p in listing}
    return {name: (mtool("mtype", "-i", boot.spec, f"::/{name}") if name.lower() in present else None)
            for name in FILES}


def write_dir(boot_dir: Path, files: dict[str, bytes]) -> None:
    """Into a mounted boot partition: a temporary file and a rename, then sync."""
    if not boot_dir.is_dir():
        raise StampError(f"{boot_dir}: not a directory (the mounted boot partition, e.g. /media/$USER/RTBOOT)")
    for name, data in files.items():
        tmp = boot_dir / f".{name}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, boot_dir / name)
        except OSError as e:
            raise StampError(f"{boot_dir / name}: cannot write: {e.strerror or e}") from None
    os.sync()


def read_dir(boot_dir: Path) -> dict[str, bytes | None]:
    if not boot_dir.is_dir():
        raise StampError(f"{boot_dir}: not a directory")
    return {name: ((boot_dir / name).read_bytes() if (boot_dir / name).is_file() else None) for name in FILES}

