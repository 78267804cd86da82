"""The fleet: N simulated terminals spread over a few processes (bench.fleet.sim), driven together."""
from __future__ import annotations

import multiprocessing as mp
import threading
import time
from pathlib import Path
from typing import Any

from bench.fleet import sim

CENTER = "C1"
# paho-mqtt's network loop uses select(), which cannot watch a descriptor numbered 1,024 or above; a terminal
# holds ~8 (its socket and wake-up pair, two SQLite connections with their WAL), so a process hosts at most
# ~120 terminals before new connections fail ("filedescriptor out of range in select()"). 100 leaves room.
PER_PROCESS = 100


def window_of(i: int) -> str:
    return f"W{i:05d}"


def device_of(tag: str, i: int) -> str:
    return f"{tag}-{i:05d}"


class FleetError(RuntimeError):
    pass


class Fleet:
    """`procs` processes (default: PER_PROCESS terminals each) hosting `n` terminals: devices <tag>-00000…
    at windows W00000…, one window each.

    `env` is the terminals' configuration (HCP_… names: broker port, MQTT version); data goes to root/.
    """

    def __init__(self, root: Path, n: int, env: dict[str, str], procs: int | None = None, tag: str = "fleet"):
        self.root, self.n, self.env, self.tag = Path(root), n, env, tag
        self._lock = threading.Lock()
        self.procs = procs or max(1, -(-n // PER_PROCESS))
        self.root.mkdir(parents=True, exist_ok=True)
        ctx = mp.get_context("spawn")  # a fresh interpreter: no threads inherited from this one
        self._conns, self._procs = [], []
        for k in range(self.procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=sim.serve, args=(child, str(self.root / f"sim-{k}.log")), name=f"fleet-sim-{k}",
                            daemon=True)
            p.start()
            self._conns.append(parent)
            self._procs.append(p)
        specs = [[] for _ in range(self.procs)]
        for i in range(n):
            specs[i % self.procs].append((device_of(tag, i), window_of(i)))
        self.all("create", lambda k: (str(self.root / "terminals"), specs[k], env))

    @property
    def windows(self) -> list[str]:
        return [window_of(i) for i in range(self.n)]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self._procs]

    def all(self, name: str, args: Any = (), timeout: float = 600) -> list:
        """Send a command to every process at once, then gather the answers (in process order)."""
        with self._lock:  # a sampling thread and the scenario share the pipes
            return self._all(name, args, timeout)

    def _all(self, name: str, args: Any, timeout: float) -> list:
        for k, conn in enumerate(self._conns):
            conn.send((name, args(k) if callable(args) else args))
        out = []
        for k, conn in enumerate(self._conns):
            if not conn.poll(timeout):
                raise FleetError(f"simulator process {k} did not answer {name!r} within {timeout} s "
                                 f"(log: {self.root / f'sim-{k}.log'})")
            status, value = conn.recv()
            if status != "ok":
                raise FleetError(f"simulator process {k}: {value} (log: {self.root / f'sim-{k}.log'})")
            out.append(value)
        return out

    def prefill(self, per_terminal: int) -> int:
        return sum(self.all("prefill", (per_terminal,), timeout=3600))

    def start(self, own_threads: bool = False) -> None:
        """Connect every terminal; `own_threads`: each with its own core and courier threads, as on a board."""
        self.all("start", (own_threads,))

    def online(self) -> int:
        return sum(self.all("online"))

    def pending(self) -> int:
        return sum(self.all("pending"))

    def counts(self) -> dict:
        parts = self.all("counts")
        return {k: sum(p[k] for p in parts) for k in ("pending", "quarantined")}

    def citizens(self, on: bool) -> None:
        self.all("citizens", (on,))

    def collect(self) -> tuple[list[str], list[tuple[float, float]], int]:
        """(every rating id committed since the last collect, (receipt wall time, press→receipt ms), presses
        still without a receipt)."""
        ids, lat, open_ = [], [], 0
        for part in self.all("collect"):
            ids += part["ids"]
            lat += part["latencies"]
            open_ += part["unreceipted_presses"]
        return ids, lat, open_

    def collect_peek(self) -> int:
        """Presses committed and not yet receipted, over the whole fleet."""
        return sum(self.all("awaiting"))

    def stats(self) -> dict:
        parts = self.all("stats")
        return {"rss_mb": sum(p["rss_mb"] for p in parts), "threads": sum(p["threads"] for p in parts),
                "fds": sum(p["fds"] for p in parts), "cpu_s": sum(p["cpu_s"] for p in parts),
                "processes": len(parts), "per_process": parts}

    def wait_online(self, timeout: float = 300) -> float:
        t0 = time.monotonic()
        while (up := self.online()) < self.n:
            if time.monotonic() - t0 > timeout:
                raise FleetError(f"only {up} of {self.n} terminals connected within {timeout} s")
            time.sleep(0.5)
        return time.monotonic() - t0

    def close(self) -> None:
        try:
            self.all("stop", timeout=300)
        except (FleetError, OSError, EOFError):
            pass
        for conn in self._conns:
            try:
                conn.send(("exit", ()))
            except OSError:
                pass
        for p in self._procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
