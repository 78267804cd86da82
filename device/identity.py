"""A stable device id: configured, else from the board's serial number, else from /etc/machine-id.

The machine id is hashed with an application key (as machine-id(5) asks) so the raw value never
leaves the device. On a read-only root (the SD image) /etc/machine-id is made afresh at every boot, so
the id derived from it is kept in the data directory the first time (`device-id`) and read back from
there afterwards: a board without a serial number (QEMU, some non-Pi boards) keeps its id, and with it
its credentials and pairing, across reboots.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
from pathlib import Path

log = logging.getLogger(__name__)
KEPT = "device-id"
KEPT_ID = re.compile(r"m-[0-9a-f]{16}")

SERIAL_FILES = (Path("/proc/device-tree/serial-number"), Path("/sys/firmware/devicetree/base/serial-number"))
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def device_id(configured: str = "", root: Path = Path("/"), data_dir: Path | None = None) -> str:
    """The id: `configured`, the board's serial, the one kept in `data_dir`, else from the machine id
    (then kept in `data_dir` when given)."""
    if configured:
        return configured
    for f in SERIAL_FILES:
        serial = _read(root / f.relative_to("/"))
        if serial and re.fullmatch(r"[0-9a-fA-F]{8,32}", serial) and set(serial) != {"0"}:
            return "rpi-" + serial.lower().lstrip("0")[-16:]
    if data_dir is not None:
        kept = _read(Path(data_dir) / KEPT)
        if KEPT_ID.fullmatch(kept):
            return kept
        if kept:
            log.warning("%s holds no device id (%r): made again from the machine id", Path(data_dir) / KEPT, kept[:40])
    for f in MACHINE_ID_FILES:
        mid = _read(root / f.relative_to("/"))
        if mid:
            made = "m-" + hmac.new(b"rating-terminal", mid.encode(), hashlib.sha256).hexdigest()[:16]
            if data_dir is not None:
                _keep(Path(data_dir), made)
            return made
    raise RuntimeError("no device id: set [device] id, or provide /etc/machine-id")


def _keep(data_dir: Path, made: str) -> None:
    """Write the id durably; a failure is logged, not fatal: the terminal still runs, with an id that may
    change at the next boot."""
    from device.enrolment import write_private
    try:
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(data_dir / KEPT, (made + "\n").encode())
    except OSError as e:
        log.warning("cannot keep the device id in %s (%s): it may change at the next boot", data_dir / KEPT, e)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().rstrip(b"\0\n ").decode("ascii", "replace").strip()
    except OSError:
        return ""


MODEL_FILES = (Path("/proc/device-tree/model"), Path("/sys/firmware/devicetree/base/model"))


def model(root: Path = Path("/")) -> str:
    """The board's model string (e.g. "Raspberry Pi Zero 2 W Rev 1.0"), else the CPU architecture."""
    import platform
    for f in MODEL_FILES:
        text = _read(root / f.relative_to("/"))
        if text:
            return "".join(ch for ch in text if ch.isprintable())[:64]
    return (platform.machine() or "unknown")[:64]
