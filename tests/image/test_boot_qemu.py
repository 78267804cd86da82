"""The real arm64 image booted in qemu-system-aarch64 (slow: `make image-test`, marker `image`).

A center on the host (TLS Mosquitto with Dynamic Security from a center file, the pairing service, the
record's intake) and the image stamped with that center's enrolment file. QEMU's user-mode network is
`restrict=on` with one forward: the guest's 10.0.2.100:<broker port> to the host broker's loopback port.

First boot: the data partition grows, the kiosk unit reports READY, the terminal announces itself and gets a
pairing code, staff pair it to W01. Then a case arrives, the broker forward is cut, a rating is made through
the virtio tablet (a touch on the level button), committed offline, and QEMU is killed. Second boot: the
rating reaches the center's record and is receipted. Figures go to bench/image.json.

Image: $RTIMAGE, else the newest image-build/out/rating-terminal-*-arm64.img.xz. Nothing here is skipped:
without an image or QEMU the test fails (it only runs when selected with `-m image`).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import functools

import pytest

from devkit import waiting

wait_for = functools.partial(waiting.wait_for, every=1)  # a guest's screen and logs: once a second is enough

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "image-build"))

from rtimage import qemu  # noqa: E402

pytestmark = [pytest.mark.image, pytest.mark.timeout(int(os.environ.get("RTIMAGE_TIMEOUT", "5400")))]

CARD_EXTRA = 1024**3              # the "SD card" the image is flashed onto is this much larger than the image
BOOT_TIMEOUT = float(os.environ.get("RTIMAGE_BOOT_TIMEOUT", "900"))   # TCG on 2 shared cores is slow
# An idle period: from the end of the first journal save (5 min after boot, carrying the boot's warnings)
# to the end of the next (rating-journal-save.timer: every 15 min), so it holds exactly one save, as every
# idle quarter-hour does. RTIMAGE_IDLE_S=<s>: a fixed, shorter window instead (development; an estimate).
IDLE_S = float(os.environ.get("RTIMAGE_IDLE_S", "0"))
JOURNAL_SAVED = r"Finished rating-journal-save-now"
READY_LINE = r"Started .*Rating terminal kiosk"
# where the first level button (非常满意) is, as a fraction of the screen (docs/screens/case-1280x800.png: the leftmost level button)
LEVEL_1_AT = (0.107, 0.875)


def find_image() -> Path:
    if os.environ.get("RTIMAGE"):
        path = Path(os.environ["RTIMAGE"])
        assert path.exists(), f"RTIMAGE={path} does not exist"
        return path
    found = sorted((REPO / "image-build/out").glob("rating-terminal-*-arm64.img.xz"), key=lambda p: p.stat().st_mtime)
    assert found, "no image in image-build/out/: run `make image` first (or set RTIMAGE)"
    return found[-1]


def data_partition_end(disk: Path) -> tuple[int, int]:
    """(end of p3 in bytes, size of the ext4 file system in p3 in bytes) read from the disk file."""
    p3 = [p for p in qemu.partitions(disk) if p.number == 3][0]
    out = subprocess.run(["dumpe2fs", "-h", f"{disk}?offset={p3.start}"], capture_output=True, text=True)
    if out.returncode:  # older e2fsprogs: no ?offset= syntax; read the piece out
        piece = disk.with_suffix(".p3")
        subprocess.run(["dd", f"if={disk}", f"of={piece}", "bs=1M", f"skip={p3.start // 2**20}",
                        f"count={p3.size // 2**20}", "conv=sparse", "status=none"], check=True)
        out = subprocess.run(["dumpe2fs", "-h", str(piece)], capture_output=True, text=True, check=True)
        piece.unlink()
    fields = dict(re.findall(r"^([^:\n]+):\s+(.*)$", out.stdout, re.M))
    return p3.start + p3.size, int(fields["Block count"]) * int(fields["Block size"])


@pytest.fixture
def site(tmp_path):
    """The host's center: PKI with the guest-side broker address, broker, pairing service, record intake."""
    from provisioning import brokerconf, certs
    from provisioning import config as center_config
    from provisioning.registry import Registry
    from provisioning.service import Provisioner
    from tests.provisioning.helpers import CENTER, center_broker, write_center_file

    root = tmp_path / "center"
    pki = {"ca": certs.make_ca(root / "pki", "Test center CA")}
    pki["server"] = certs.issue(pki["ca"], root / "pki", "center", hosts=(qemu.GUEST_BROKER_IP, "127.0.0.1"))
    path = write_center_file(root, pki)
    # terminals reach the broker at the guest-side forward address; it listens on the host's loopback
    text = path.read_text("utf-8").replace('host = "127.0.0.1"', f'host = "{qemu.GUEST_BROKER_IP}"', 1)
    path.write_text(text, "utf-8")
    cfg = center_config.load(path)
    broker = center_broker(cfg, root).start()
    reg = Registry(root / "registry.db")
    prov = Provisioner(cfg, reg, port=cfg.broker.local_port,
                       password=brokerconf.account_password(cfg, "provisioning")).start()
    from center.ledger import Ledger
    ledger = Ledger(tmp_path / "ledger.db", port=cfg.broker.local_port, center=CENTER, client_id="ledger-C1",
                    username="ledger", password=brokerconf.account_password(cfg, "ledger")).start()
    yield {"cfg": cfg, "root": root, "broker": broker, "reg": reg, "prov": prov, "ledger": ledger,
           "enrolment": root / "generated" / "enrolment.toml", "center": CENTER}
    ledger.stop()
    prov.stop()
    reg.close()
    broker.stop()


def stamp(disk: Path, enrolment: Path, work: Path) -> None:
    """H1a's stamp, as a technician runs it: the enrolment file and the site settings onto p1."""
    out = subprocess.run([sys.executable, str(REPO / "image-build/stamp"), str(disk), "--enrolment", str(enrolment),
                          "--timezone", "Asia/Shanghai"], capture_output=True, text=True)
    assert out.returncode == 0, f"stamp failed:\n{out.stdout}\n{out.stderr}"


def write_figures(figures: dict) -> None:
    path = REPO / "bench" / "image.json"
    old = json.loads(path.read_text()) if path.exists() else {}
    old.update(figures)
    path.write_text(json.dumps(old, indent=2, ensure_ascii=False) + "\n")
    for key, value in figures.items():
        print(f"image-test: {key} = {value}")


def test_image_boots_enrols_and_keeps_a_rating_across_a_hard_kill(site, tmp_path):
    from center.ledger import query
    from devkit import factories
    from protocol import codec
    from provisioning import brokerconf
    from tests.provisioning.helpers import Client

    assert qemu.have_qemu(), "qemu-system-aarch64 is missing (Debian package qemu-system-arm)"
    image = find_image()
    work = tmp_path / "qemu"
    work.mkdir()
    shots = Path(os.environ.get("RTIMAGE_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    disk = qemu.prepare_disk(image, work / "card.img", 0)
    card_bytes = disk.stat().st_size + CARD_EXTRA
    os.truncate(disk, card_bytes)
    image_p3 = qemu.partitions(disk)[-1]
    stamp(disk, site["enrolment"], work)
    kernel, initrd, card_cmdline = qemu.boot_files(disk, work)
    assert "rtroot=overlay" in card_cmdline, card_cmdline
    cmdline = qemu.qemu_cmdline(card_cmdline)
    cfg, reg, center = site["cfg"], site["reg"], site["center"]

    def boot(name: str) -> qemu.Guest:
        return qemu.Guest(disk, kernel, initrd, cmdline, work, broker_port=cfg.broker.port,
                          guest_port=cfg.broker.port, name=name).start()

    figures: dict = {"qemu": "virt, cortex-a72, -smp 2, -m 1024, TCG"}
    build_json = image.parent / "build.json"
    if build_json.exists():
        built = json.loads(build_json.read_text())
        figures.update({k: built[k] for k in ("build_s", "mmdebstrap_s", "customize_s", "assemble_s",
                                              "image_raw_bytes", "image_xz_bytes") if k in built})
    guest = None
    try:
        # -- first boot: grow, READY, hello, pairing code ----------------------------------------------
        guest = boot("first")
        # the kernel's own lines stay below loglevel=4; our initramfs script's line says it ran and the
        # root is the read-only overlay
        guest.wait_for(r"rtroot: root is read-only under a tmpfs overlay", 300)
        guest.wait_for(READY_LINE, BOOT_TIMEOUT, since_start=True)
        figures["boot_to_ready_s"] = round(time.monotonic() - guest.started_at, 1)
        guest.wait_for(r"grow-data: ", 120, since_start=True)

        ann = wait_for(lambda: (reg.announcements() or [None])[0], 300, "the terminal's hello at the center")
        device = ann.device
        assert re.fullmatch(r"\d{6}", ann.code), f"announcement without a code: {ann!r}"
        guest.wait_for(r"pairing code received", 180, since_start=True)
        time.sleep(5)
        guest.screendump(shots / "1-unpaired.png")

        mem = wait_for(guest.mem_available, 120, "the balloon's MemAvailable")
        figures["mem_available_mib"] = round(mem / 2**20)

        # staff pair it to W01 with the code; the terminal reconnects with its own account
        site["prov"].pair(ann.code, "W01", "test")
        guest.wait_for(r"paired: own account received", 180, since_start=True)
        wait_for(lambda: (st := reg.status(device)) and st.state == "online" and st.window == "W01", 180,
             "the paired terminal online at W01")

        # writes to the card: pairing done → the first journal save (one-off: credentials, binding, retained
        # inputs, the boot's warnings), then one idle period (outbox, status, one journal save)
        w0 = guest.block_writes()
        guest.wait_for(JOURNAL_SAVED, 600, since_start=True)
        time.sleep(10)
        w1, t1 = guest.block_writes(), time.monotonic()
        figures["writes_after_pairing_to_first_save_bytes"] = w1 - w0
        if IDLE_S:
            time.sleep(IDLE_S)
        else:
            guest.wait_for(JOURNAL_SAVED, 1500)   # the next save: one whole period of the timer
            time.sleep(10)
        w2, t2 = guest.block_writes(), time.monotonic()
        figures["idle_write_window_s"] = round(t2 - t1)
        figures["idle_writes_bytes_per_hour"] = round((w2 - w1) * 3600 / (t2 - t1))

        # a case at W01; once it is on the screen the center becomes unreachable, then a citizen taps 非常满意
        idle = guest.screen()
        guest.screendump(shots / "2-idle.png")
        sys_ = Client(cfg.broker.local_port, "centersys", brokerconf.account_password(cfg, "centersys"))
        sys_.publish(f"hcp/v1/{center}/catalog", codec.encode(factories.catalog(center)), retain=True)
        sys_.publish(f"hcp/v1/{center}/window/W01/case", codec.encode(factories.case(center, "W01", "K1")),
                     retain=True)
        wait_for(lambda: qemu.changed_fraction(idle[2], guest.screen()[2]) > 0.2, 120, "the case screen")
        time.sleep(3)
        w, h, _ = guest.screen()
        guest.screendump(shots / "3-case.png")
        qemu.block_relay(work, True)
        guest.wait_for(r"disconnected from", 60, since_start=True)
        x, y = LEVEL_1_AT
        guest.tap(int(x * w), int(y * h), w, h)
        time.sleep(2)   # within thanks_s (5 s); under TCG the screen may not have changed yet
        guest.screendump(shots / "4-thanks.png")
        time.sleep(6)
        guest.screendump(shots / "4b-offline-pending.png")
        assert not query(site["ledger"].db_path, "SELECT case_id FROM ratings"), "delivered though the broker was cut"
        guest.kill()  # a power cut: no shutdown, nothing flushed by the guest
        guest = None

        # the data partition grew to the card's end (read from the disk the guest wrote)
        end, fs_size = data_partition_end(disk)
        assert end > image_p3.start + image_p3.size, "p3 was not grown"
        assert card_bytes - end < 8 * 2**20, f"p3 ends at {end}, the card at {card_bytes}"
        assert fs_size > CARD_EXTRA // 2, f"the ext4 file system in p3 was not resized ({fs_size} bytes)"

        # -- second boot: the rating committed before the kill reaches the center and is receipted ------
        qemu.block_relay(work, False)
        guest = boot("second")
        guest.wait_for(READY_LINE, BOOT_TIMEOUT, since_start=True)
        figures["second_boot_to_ready_s"] = round(time.monotonic() - guest.started_at, 1)
        rows = wait_for(lambda: query(site["ledger"].db_path, "SELECT case_id, level, device FROM ratings"), 300,
                    "the rating at the center's record")
        assert [tuple(r) for r in rows] == [("K1", "very_satisfied", device)], rows
        wait_for(lambda: (st := reg.status(device)) and st.pending == 0, 300, "the outbox empty (receipted)")
        guest.screendump(shots / "5-after-reboot.png")
        guest.quit()
        guest = None
    finally:
        if guest:
            guest.kill()
        for log in work.glob("serial-*.log"):
            shutil.copy(log, shots / log.name)
        write_figures(figures)

