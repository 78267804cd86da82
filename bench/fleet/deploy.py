"""The center tier the fleet runs against (`devkit.cluster`), and what the scenarios read off its processes."""
from __future__ import annotations

import os
import time
from pathlib import Path

from devkit import cluster


def deployment(root: Path, kind: str = "mosquitto", workers: int = 1):
    """A started-on-enter deployment (`devkit.cluster`): Mosquitto or a 3-node NATS cluster, PostgreSQL."""
    if kind == "nats-cluster":
        return cluster.nats_deployment(root, workers=workers)
    return cluster.mosquitto_deployment(root, workers=workers, db="postgres")


def ledger_pids() -> list[int]:
    """Ledger worker processes started by this process (`python -m center.ledger`), by /proc."""
    out = []
    me = os.getpid()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == me and b"center.ledger" in (d / "cmdline").read_bytes():
                out.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(out)


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def wait_until(pred, timeout: float, what: str, every: float = 0.5) -> float:
    """Seconds until pred() is true; TimeoutError naming `what` otherwise."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(every)
    return time.monotonic() - t0
