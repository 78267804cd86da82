"""The center tier the fleet runs against: H4's `devkit.cluster` deployments when present, else a stand-in
with the same API (one project-template Mosquitto, one ledger process on a throwaway PostgreSQL)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from devkit.broker import Broker, free_port
from devkit.postgres import Postgres
from devkit.waiting import wait_for

CENTER = "C1"
# Fleet brokers hold thousands of connections: the file-descriptor limit goes up before anything is started
# (child processes, Mosquitto among them, inherit it).
BROKER_EXTRA = "max_connections -1\n"


class StandIn:
    """One Mosquitto (MQTT 5, anonymous: fleet use only) + `workers` ledger processes on PostgreSQL."""

    kind = "mosquitto"
    mqtt_version = "5"
    center_id = CENTER

    def __init__(self, root: Path, workers: int = 1):
        if workers != 1:
            raise ValueError("the stand-in deployment runs one ledger worker (several need devkit.cluster)")
        self.root = Path(root)
        self.workers = workers
        self.port = free_port()
        self.broker: Broker | None = None
        self.pg: Postgres | None = None
        self.db_url = ""
        self._ledgers: list[subprocess.Popen | None] = [None] * workers

    @property
    def brokers(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", self.port)]

    def terminal_env(self) -> dict[str, str]:
        return {"HCP_MQTT_PORT": str(self.port), "HCP_MQTT_PROTOCOL": self.mqtt_version}

    def start(self) -> "StandIn":
        (self.root / "broker").mkdir(parents=True, exist_ok=True)
        self.broker = Broker(self.port, extra=BROKER_EXTRA, workdir=str(self.root / "broker")).start()
        self.pg = Postgres(max_connections=100).start()
        self.db_url = self.pg.url
        for i in range(self.workers):
            self.restart_worker(i)
        return self

    def _ledger(self, i: int) -> subprocess.Popen:
        log = open(self.root / f"ledger-{i}.log", "ab")
        return subprocess.Popen([sys.executable, "-m", "center.ledger", "--port", str(self.port), "--db", self.db_url,
                                 "--center", CENTER], stdout=log, stderr=subprocess.STDOUT,
                                cwd=Path(__file__).resolve().parents[2])

    def kill_broker(self, i: int) -> None:
        self.broker.proc.send_signal(signal.SIGKILL)
        self.broker.proc.wait()

    def restart_broker(self, i: int) -> None:
        self.broker.start()

    def kill_worker(self, i: int) -> None:
        p = self._ledgers[i]
        p.send_signal(signal.SIGKILL)
        p.wait()

    def restart_worker(self, i: int) -> None:
        log = self.root / f"ledger-{i}.log"
        before = log.read_bytes().count(b"subscribed to") if log.exists() else 0
        self._ledgers[i] = self._ledger(i)
        wait_for(lambda: log.exists() and log.read_bytes().count(b"subscribed to") > before, 60,
                 f"ledger worker {i} subscribed (log {log})")

    def stored(self) -> int:
        from center.ledger import query
        return query(self.db_url, "SELECT count(*) FROM ratings")[0][0]

    def stop(self) -> None:
        for p in self._ledgers:
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        if self.broker:
            self.broker.stop()
        if self.pg:
            self.pg.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def deployment(root: Path, kind: str = "mosquitto", workers: int = 1):
    """A started-on-enter deployment: H4's devkit.cluster if it is there, else the stand-in (mosquitto only)."""
    try:
        from devkit import cluster
    except ImportError:
        cluster = None
    if kind == "nats-cluster":
        if cluster is None:
            raise RuntimeError("the NATS cluster deployment needs devkit.cluster")
        return cluster.nats_deployment(root, workers=workers)
    if cluster is not None:
        return cluster.mosquitto_deployment(root, workers=workers, db="postgres")
    return StandIn(root, workers)


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
