"""Boot the card image in qemu-system-aarch64 (virt machine, TCG) and watch it from the host.

The guest gets Debian's arm64 kernel and initrd from the image's own boot partition (read with mtools, no
root), the image as a virtio disk (a sparse copy, enlarged so first boot has room to grow the data
partition), user-mode networking with `restrict=on` and one guest forward: 10.0.2.100:<port> → a relay
to the host's loopback broker. Everything the test asserts is read from the host side: the serial console
(the journal is forwarded to it), QMP (screendump, input events, block stats, the balloon's memory stats)
and, after QEMU is gone, the image's partition table.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GUEST_BROKER_IP = "10.0.2.100"


@dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int   # bytes


def partitions(image: Path) -> list[Partition]:
    """The MBR partition table of an image file (sfdisk -J)."""
    out = subprocess.run(["sfdisk", "-J", str(image)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"sfdisk -J {image}: {out.stderr.strip()}")
    table = json.loads(out.stdout)["partitiontable"]
    sector = table.get("sectorsize", 512)
    parts = []
    for p in table["partitions"]:
        number = int(re.search(r"(\d+)$", p["node"]).group(1))
        parts.append(Partition(number, p["start"] * sector, p["size"] * sector))
    return parts


def boot_files(image: Path, dest: Path) -> tuple[Path, Path, str]:
    """Copy the kernel and initrd out of p1 (FAT) with mtools; also return p1's cmdline.txt."""
    p1 = partitions(image)[0]
    target = f"{image}@@{p1.start}"
    listing = subprocess.run(["mdir", "-b", "-i", target, "::/"], capture_output=True, text=True, check=True).stdout
    names = [line.rsplit("/", 1)[-1].strip() for line in listing.splitlines() if line.strip()]
    kernels = sorted(n for n in names if n.startswith("vmlinuz"))
    initrds = sorted(n for n in names if n.startswith("initrd.img"))
    if not kernels or not initrds:
        raise RuntimeError(f"no vmlinuz*/initrd.img* in the boot partition of {image} (found: {names})")
    dest.mkdir(parents=True, exist_ok=True)
    kernel, initrd = dest / "vmlinuz", dest / "initrd.img"
    for name, out in ((kernels[-1], kernel), (initrds[-1], initrd)):
        subprocess.run(["mcopy", "-o", "-n", "-i", target, f"::/{name}", str(out)], check=True)
    cmdline = subprocess.run(["mtype", "-i", target, "::/cmdline.txt"], capture_output=True, text=True,
                             check=True).stdout.strip()
    return kernel, initrd, cmdline


def qemu_cmdline(card_cmdline: str, extra: str = "") -> str:
    """The card's cmdline.txt made fit for QEMU virt: its PL011 is ttyAMA0 (the Pi's firmware alias serial0
    does not exist there), the console is the serial port, and the journal is forwarded to it."""
    words = [w for w in card_cmdline.split() if not w.startswith("console=") and w not in ("quiet",)
             and not w.startswith("loglevel=")]
    words += ["console=ttyAMA0,115200", "loglevel=4", "systemd.journald.forward_to_console=1",
              "systemd.journald.max_level_console=info",
              "systemd.show_status=1"]
    return " ".join(words + extra.split())


def prepare_disk(image: Path, dest: Path, size_bytes: int) -> Path:
    """A sparse copy of the image, enlarged to size_bytes: the "card" first boot grows p3 onto."""
    if str(image).endswith(".xz"):
        with open(dest, "wb") as fh:
            subprocess.run(["xz", "-dc", str(image)], stdout=fh, check=True)
    else:
        subprocess.run(["cp", "--sparse=always", str(image), str(dest)], check=True)
    if dest.stat().st_size < size_bytes:
        os.truncate(dest, size_bytes)
    return dest


RELAY = r'''
import os, select, socket, sys
# guestfwd relay: one guest connection on stdin/stdout <-> one TCP connection to the host broker.
# While a file named "blocked" lies next to this script the broker is "unreachable": new connections are
# refused and open ones are cut within half a second.
flag = os.path.join(os.path.dirname(os.path.abspath(__file__)), "blocked")
if os.path.exists(flag):
    sys.exit(0)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while not os.path.exists(flag):
    ready, _, _ = select.select([0, s], [], [], 0.5)
    if 0 in ready:
        data = os.read(0, 65536)
        if not data:
            break
        s.sendall(data)
    if s in ready:
        data = s.recv(65536)
        if not data:
            break
        os.write(1, data)
'''


class QMP:
    """A minimal QMP client over a unix socket: commands in order, events kept aside."""

    def __init__(self, path: Path, timeout: float = 30):
        end = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(timeout)
        self.file = self.sock.makefile("rwb")
        self.events: list[dict] = []
        json.loads(self.file.readline())  # greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments) -> object:
        msg = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self.file.write(json.dumps(msg).encode() + b"\n")
        self.file.flush()
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError(f"QMP closed during {command}")
            reply = json.loads(line)
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            return reply.get("return")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Guest:
    """One qemu-system-aarch64 run of a prepared disk; serial console to a file; QMP on a socket."""

    def __init__(self, disk: Path, kernel: Path, initrd: Path, cmdline: str, workdir: Path, *,
                 broker_port: int | None, guest_port: int = 1883, smp: int = 2, mem_mib: int = 1024,
                 name: str = "boot"):
        self.disk, self.kernel, self.initrd, self.cmdline = disk, kernel, initrd, cmdline
        self.workdir = workdir
        self.broker_port, self.guest_port = broker_port, guest_port
        self.smp, self.mem_mib = smp, mem_mib
        self.serial = workdir / f"serial-{name}.log"
        self.qmp_path = workdir / f"qmp-{name}.sock"
        self.proc: subprocess.Popen | None = None
        self.qmp: QMP | None = None
        self.started_at = 0.0
        self._pos = 0

    def argv(self) -> list[str]:
        net = "user,id=n0,restrict=on"
        if self.broker_port:
            relay = self.workdir / "relay.py"
            relay.write_text(RELAY)
            # commas inside a QEMU option value are doubled
            cmd = f"{sys.executable} {relay} {self.broker_port}".replace(",", ",,")
            net += f",guestfwd=tcp:{GUEST_BROKER_IP}:{self.guest_port}-cmd:{cmd}"
        return ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a72", "-smp", str(self.smp),
                "-m", str(self.mem_mib), "-accel", "tcg", "-nodefaults", "-no-reboot",
                "-kernel", str(self.kernel), "-initrd", str(self.initrd), "-append", self.cmdline,
                "-drive", f"file={self.disk},format=raw,if=none,id=card,cache=writeback",
                "-device", "virtio-blk-pci,drive=card",
                "-netdev", net, "-device", "virtio-net-pci,netdev=n0,romfile=",  # no PXE ROM: the kernel is given
                "-device", "virtio-gpu-pci", "-device", "virtio-tablet-pci", "-device", "virtio-keyboard-pci",
                "-device", "virtio-balloon-pci,id=balloon0",
                "-device", "virtio-rng-pci",
                "-display", "none", "-serial", f"file:{self.serial}",
                "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]

    def start(self) -> "Guest":
        self.serial.unlink(missing_ok=True)
        self.qmp_path.unlink(missing_ok=True)
        self._pos = 0
        log = open(self.workdir / "qemu-stderr.log", "ab")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
        self.started_at = time.monotonic()
        self.qmp = QMP(self.qmp_path)
        try:
            self.qmp.execute("qom-set", path="/machine/peripheral/balloon0", property="guest-stats-polling-interval",
                             value=2)
        except RuntimeError:
            pass
        return self

    def console(self) -> str:
        return self.serial.read_text(errors="replace") if self.serial.exists() else ""

    def wait_for(self, pattern: str, timeout: float, *, since_start: bool = False) -> re.Match:
        """Wait until the serial console shows pattern (a regex) after what was already matched."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            text = self.console()
            m = rx.search(text, 0 if since_start else self._pos)
            if m:
                self._pos = m.end()
                return m
            if self.proc and self.proc.poll() is not None:
                raise RuntimeError(f"QEMU exited ({self.proc.returncode}) before {pattern!r}; console tail:\n"
                                   + text[-3000:])
            if time.monotonic() > end:
                raise TimeoutError(f"no {pattern!r} on the console within {timeout:.0f} s; tail:\n" + text[-3000:])
            time.sleep(0.5)

    def block_writes(self) -> int:
        """Bytes the guest has written to the card so far (QMP query-blockstats)."""
        stats = self.qmp.execute("query-blockstats")
        return sum(s["stats"]["wr_bytes"] for s in stats)

    def mem_available(self) -> int | None:
        """The guest's MemAvailable in bytes, from the virtio balloon's stats (None until the driver reports)."""
        stats = self.qmp.execute("qom-get", path="/machine/peripheral/balloon0", property="guest-stats")
        value = stats.get("stats", {}).get("stat-available-memory", -1)
        # "not reported yet" is -1, which QEMU prints as 2^64 - 1
        return value if 0 < value < 2**62 else None

    def screendump(self, path: Path) -> Path:
        """The guest's screen (virtio-gpu scanout) as PNG, or PPM when path ends in .ppm."""
        fmt = "ppm" if path.suffix == ".ppm" else "png"
        self.qmp.execute("screendump", filename=str(path), format=fmt)
        return path

    def screen(self) -> tuple[int, int, bytes]:
        """(width, height, RGB bytes) of the current screen."""
        path = self.workdir / "screen.ppm"
        self.screendump(path)
        return read_ppm(path)

    def tap(self, x: int, y: int, width: int, height: int) -> None:
        """A touch (press + release) at pixel (x, y) of a width×height screen, through the virtio tablet."""
        ax, ay = int(x * 32767 / max(width - 1, 1)), int(y * 32767 / max(height - 1, 1))
        move = [{"type": "abs", "data": {"axis": "x", "value": ax}}, {"type": "abs", "data": {"axis": "y", "value": ay}}]
        self.qmp.execute("input-send-event", events=move)
        self.qmp.execute("input-send-event", events=[{"type": "btn", "data": {"down": True, "button": "left"}}])
        time.sleep(0.15)
        self.qmp.execute("input-send-event", events=[{"type": "btn", "data": {"down": False, "button": "left"}}])

    def kill(self) -> None:
        """Hard stop: SIGKILL, no shutdown, no flush by the guest (a power cut)."""
        if self.qmp:
            self.qmp.close()
            self.qmp = None
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def quit(self) -> None:
        """QMP quit: QEMU exits at once (the guest gets no shutdown either)."""
        if self.qmp:
            try:
                self.qmp.execute("quit")
            except (ConnectionError, OSError, RuntimeError):
                pass
        if self.proc:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill()


def block_relay(workdir: Path, blocked: bool) -> None:
    """Refuse (or allow again) new guest connections to the host broker."""
    flag = workdir / "blocked"
    if blocked:
        flag.write_text("")
    else:
        flag.unlink(missing_ok=True)


def have_qemu() -> str | None:
    return shutil.which("qemu-system-aarch64")


def read_ppm(path: Path) -> tuple[int, int, bytes]:
    """A binary PPM (P6, maxval 255) as QEMU's screendump writes it: (width, height, RGB bytes)."""
    data = path.read_bytes()
    m = re.match(rb"P6\s+(\d+)\s+(\d+)\s+(\d+)\s", data)
    if not m or m.group(3) != b"255":
        raise ValueError(f"{path}: not a P6 PPM with maxval 255")
    w, h = int(m.group(1)), int(m.group(2))
    pixels = data[m.end():m.end() + w * h * 3]
    if len(pixels) != w * h * 3:
        raise ValueError(f"{path}: {len(pixels)} pixel bytes, expected {w * h * 3}")
    return w, h, pixels


def changed_fraction(a: bytes, b: bytes, step: int = 97) -> float:
    """The fraction of sampled pixels that differ between two same-sized screens (1.0 if sizes differ)."""
    if len(a) != len(b) or not a:
        return 1.0
    n = diff = 0
    for i in range(0, len(a) - 2, 3 * step):
        n += 1
        diff += a[i:i + 3] != b[i:i + 3]
    return diff / n


def dominant_color(rgb: bytes) -> tuple[int, int, int]:
    """The most frequent colour of sampled pixels (a blank screen is one colour)."""
    from collections import Counter
    counts = Counter(rgb[i:i + 3] for i in range(0, len(rgb) - 2, 3 * 101))
    c = counts.most_common(1)[0][0]
    return c[0], c[1], c[2]
