"""A stable device id: configured, else from the board's serial number, else from /etc/machine-id.

The machine id is hashed with an application key (as machine-id(5) asks) so the raw value never
leaves the device.
"""
from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

SERIAL_FILES = (Path("/proc/device-tree/serial-number"), Path("/sys/firmware/devicetree/base/serial-number"))
MACHINE_ID_FILES = (Path("/etc/machine-id"), Path("/var/lib/dbus/machine-id"))


def device_id(configured: str = "", root: Path = Path("/")) -> str:
    if configured:
        return configured
    for f in SERIAL_FILES:
        serial = _read(root / f.relative_to("/"))
        if serial and re.fullmatch(r"[0-9a-fA-F]{8,32}", serial) and set(serial) != {"0"}:
            return "rpi-" + serial.lower().lstrip("0")[-16:]
    for f in MACHINE_ID_FILES:
        mid = _read(root / f.relative_to("/"))
        if mid:
            return "m-" + hmac.new(b"rating-terminal", mid.encode(), hashlib.sha256).hexdigest()[:16]
    raise RuntimeError("no device id: set [device] id, or provide /etc/machine-id")


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
