"""A one-line-per-interface network summary for the maintenance screen (no extra packages).

Reads `/sys/class/net/<if>/operstate` and asks the kernel for each interface's IPv4 address
(SIOCGIFADDR). `sysfs` is a parameter so tests can use a temporary tree.
"""
from __future__ import annotations

import fcntl
import socket
import struct
from pathlib import Path

SIOCGIFADDR = 0x8915


def ipv4(ifname: str) -> str:
    """The interface's IPv4 address, or '' (no address, no such interface, not Linux)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            packed = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", ifname[:15].encode()))
        return socket.inet_ntoa(packed[20:24])
    except OSError:
        return ""


def summary(sysfs: Path = Path("/sys/class/net")) -> list[str]:
    """e.g. ['eth0 up 192.168.1.23', 'wlan0 down']; loopback left out."""
    lines = []
    try:
        names = sorted(p.name for p in sysfs.iterdir())
    except OSError:
        return lines
    for name in names:
        if name == "lo":
            continue
        try:
            state = (sysfs / name / "operstate").read_text().strip()
        except OSError:
            state = "?"
        addr = ipv4(name)
        lines.append(" ".join(x for x in (name, state, addr) if x))
    lines.append(f"host {socket.gethostname()}")
    return lines
