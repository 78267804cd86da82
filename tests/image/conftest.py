"""Image-build tests: image-build/ on sys.path (its rtimage package), and a synthetic image assembled once
per session from a tiny boot tree and a root tree made of image-build/rootfs/ and kiosk/ (no Debian
inside: what is checked is the assembly, the layout and our own files)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE_BUILD = REPO / "image-build"
ROOTFS = IMAGE_BUILD / "rootfs"
KIOSK = IMAGE_BUILD / "kiosk"
sys.path.insert(0, str(IMAGE_BUILD))

from rtimage import layout  # noqa: E402
from rtimage.assemble import Entry, assemble  # noqa: E402

EPOCH = 1_700_000_000
KERNEL = b"\x4d\x5a" + bytes(range(256)) * 64   # stands in for vmlinuz (arm64 Image starts with "MZ")


def make_boot_tree(d: Path) -> Path:
    """What raspi-firmware's hooks leave in /boot/firmware, in miniature."""
    (d / "overlays").mkdir(parents=True)
    (d / "vmlinuz").write_bytes(KERNEL)
    (d / "initrd.img").write_bytes(b"\x1f\x8b" + b"initramfs" * 100)
    (d / "bcm2711-rpi-4-b.dtb").write_bytes(b"\xd0\x0d\xfe\xed" + b"dtb" * 50)
    (d / "overlays" / "vc4-kms-v3d.dtbo").write_bytes(b"\xd0\x0d\xfe\xed" + b"overlay")
    (d / "config.txt").write_text("arm_64bit=1\nkernel=vmlinuz\ninitramfs initrd.img followkernel\ndisable_splash=1\n")
    (d / "cmdline.txt").write_text(layout.cmdline())
    return d


def make_root_tree(d: Path) -> Path:
    """image-build/rootfs/ + the kiosk files where they go, with empty mount points."""
    shutil.copytree(ROOTFS, d, symlinks=True)
    (d / "etc/rating-terminal").mkdir(parents=True, exist_ok=True)
    shutil.copy2(KIOSK / "rating-terminal-ui.service", d / "etc/systemd/system/")
    shutil.copy2(KIOSK / "kiosk.env", d / "etc/rating-terminal/kiosk.env")
    shutil.copy2(KIOSK / "config.ini", d / "etc/rating-terminal/kivy-config.ini")
    for mp in (layout.BOOT_DIR, layout.DATA_DIR, "/media", "/tmp"):
        (d / mp.lstrip("/")).mkdir(parents=True, exist_ok=True)
    (d / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                  f"rating:x:{layout.RATING_UID}:{layout.RATING_GID}::/var/lib/rating-terminal:/usr/sbin/nologin\n")
    return d


# Forced owners: the test runs as whoever runs it; the image's files are root's, the data dir the kiosk's.
ROOT_OWNERS = [Entry("/", 0, 0, 0o755), Entry("/etc/passwd", 0, 0, 0o644),
               Entry("/usr/lib/rating-terminal/site-apply", 0, 0, 0o755),
               Entry("/etc/ssh/sshd_config.d/50-rating-terminal.conf", 0, 0, 0o600),
               Entry("/var/lib/rating-terminal", layout.RATING_UID, layout.RATING_GID, 0o750)]
DATA_OWNERS = [Entry("/", layout.RATING_UID, layout.RATING_GID, 0o750)]


BOOT_MIB = 64  # the real image's is 256 (layout.BOOT_MIB); smaller keeps xz and bmaptool quick here


def build(tmp: Path, name: str = "rt.img") -> tuple[Path, Path, object]:
    boot = make_boot_tree(tmp / "boot")
    root = make_root_tree(tmp / "root")
    info = assemble(boot, root, tmp / "out" / name, root_owners=ROOT_OWNERS, data_owners=DATA_OWNERS, epoch=EPOCH,
                    boot_mib=BOOT_MIB)
    return boot, root, info


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory):
    """(boot tree, root tree, ImageInfo) of one assembled synthetic image; tests must not modify it."""
    return build(tmp_path_factory.mktemp("synthetic"))


@pytest.fixture
def image_copy(synthetic, tmp_path):
    """A private, sparse copy of the synthetic image (for tests that write into it)."""
    dst = tmp_path / "card.img"
    subprocess.run(["cp", "--sparse=always", str(synthetic[2].path), str(dst)], check=True)
    return dst
