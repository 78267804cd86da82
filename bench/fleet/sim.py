"""One simulator process: many real terminals (`device.terminal.Terminal`: its outbox, courier, link and
core, each on its own MQTT connection), driven by commands from the fleet (bench.fleet.fleet).

Threads: each terminal keeps paho's network thread; its core and courier are stepped by one of the
process's few `device.driver.Driver` threads (a terminal on its board runs both on threads of its own:
three threads a terminal made 6,000 for 2,000 terminals, too many for 2 cores). `own_threads` keeps the
board's layout, to compare.

Observation seam (bench code only, no change to device/): each terminal's `outbox.add` and
`outbox.delivered` are wrapped on the instance. `add` tells when a rating was committed (its id, and the
press that made it); `delivered` is where the courier deletes receipted records — the receipt time.
A simulated citizen presses a level a moment after a case shows on the screen, as at a real window.
"""
from __future__ import annotations

import gc
import heapq
import logging
import os
import random
import resource
import sys
import threading
import time
from collections import deque
from pathlib import Path

from device.driver import Driver
from device.machine import LevelPressed, Phase
from device.outbox import Outbox
from device.terminal import Terminal
from devkit.terminals import terminal_config
from protocol.values import Channel, Level

# Production timings (device/config.py defaults), not the tests' fast ones: a fleet behaves as deployed.
PRODUCTION = {"HCP_MQTT_RECONNECT_MIN_S": "1", "HCP_MQTT_RECONNECT_MAX_S": "60",
              "HCP_OUTBOX_RECEIPT_TIMEOUT_S": "30", "HCP_OUTBOX_RETRY_MAX_S": "600"}
PRESS_DELAY_S = (0.5, 3.0)  # the citizen reads the screen, then presses
DRIVERS = 4                 # driver threads per process: commits and deletions fsync, so a few run side by side


def raise_nofile() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (each terminal holds ~8 descriptors); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Observed:
    """The bench's view of one terminal: presses waiting for their commit, committed ids, receipt times."""

    def __init__(self, term: Terminal, sink: "Sim"):
        self.term = term
        self.presses: deque[float] = deque()   # press times (monotonic) not yet committed, oldest first
        self.last_case = ""
        ob: Outbox = term.outbox
        add, delivered = ob.add, ob.delivered

        def observed_add(leaf, build, case_id=None):
            t0 = time.monotonic()
            rec = add(leaf, build, case_id)
            slow("outbox add (its fsync)", t0)
            if leaf == "rating":
                sink.committed(rec.id, self.presses.popleft() if self.presses else None)
            return rec

        def observed_delivered(keys):
            keys = list(keys)
            t0 = time.monotonic()
            n = delivered(keys)  # raises if the deletion did not commit: then nothing is receipted yet
            slow("outbox delivered", t0)
            sink.receipted([rid for rid, _ in keys], time.monotonic())
            return n

        ob.add, ob.delivered = observed_add, observed_delivered


class Sim:
    """The terminals of one process and the commands the fleet sends it."""

    def __init__(self) -> None:
        self.terms: list[Observed] = []
        self.lock = threading.Lock()
        self.ids: list[str] = []                    # every rating committed here
        self.pressed: dict[str, float] = {}         # id → press time, until its receipt
        self.latencies: list[tuple[float, float]] = []  # (wall time of the receipt, press→receipt ms)
        self.citizens = False
        self.drivers: list[Driver] = []
        self._presses: list[tuple[float, int, Observed, str]] = []
        self._wake = threading.Condition()
        self._n = 0
        threading.Thread(target=self._press_loop, name="citizens", daemon=True).start()

    # ---- the observation seam --------------------------------------------------------------------

    def committed(self, rid: str, pressed: float | None) -> None:
        with self.lock:
            self.ids.append(rid)
            if pressed is not None:
                self.pressed[rid] = pressed

    def receipted(self, rids: list[str], at: float) -> None:
        wall = time.time()
        with self.lock:
            for rid in rids:
                p = self.pressed.pop(rid, None)
                if p is not None:
                    self.latencies.append((wall, (at - p) * 1000))

    # ---- citizens --------------------------------------------------------------------------------

    def _watch(self, ob: Observed):
        def watch(snap) -> None:
            st = snap.state
            if (self.citizens and st.phase == Phase.CASE and st.case is not None and st.case.id != ob.last_case):
                ob.last_case = st.case.id
                with self._wake:
                    self._n += 1
                    heapq.heappush(self._presses, (time.monotonic() + random.uniform(*PRESS_DELAY_S), self._n, ob,
                                                   st.case.id))
                    self._wake.notify()
        return watch

    def _press_loop(self) -> None:
        while True:
            with self._wake:
                while not self._presses or self._presses[0][0] > time.monotonic():
                    self._wake.wait(None if not self._presses else self._presses[0][0] - time.monotonic())
                _, _, ob, case_id = heapq.heappop(self._presses)
            st = ob.term.state
            if st.phase == Phase.CASE and st.case is not None and st.case.id == case_id:
                ob.presses.append(time.monotonic())
                ob.term.submit(LevelPressed(random.choice((Level.VERY_SATISFIED, Level.SATISFIED)), Channel.TOUCH))

    # ---- commands --------------------------------------------------------------------------------

    def create(self, root: str, specs: list[tuple[str, str]], env: dict[str, str]) -> int:
        """Terminals (not started) for each (device id, window), data under root/<device id>."""
        for name, window in specs:
            cfg = terminal_config(int(env.get("HCP_MQTT_PORT", "1883")), Path(root) / name,
                                  **{**PRODUCTION, **env, "HCP_DEVICE_ID": name, "HCP_CENTER_WINDOW": window})
            term = Terminal(cfg, name)
            ob = Observed(term, self)
            term.watch(self._watch(ob))
            self.terms.append(ob)
        return len(self.terms)

    def prefill(self, n: int) -> int:
        """n staff ratings in each outbox, as if taken while offline. Setup only: the fill runs with
        synchronous=OFF (one os.sync() at the end) — 100 fsyncs × 2,000 terminals would take minutes."""
        from device.machine import RatingDraft
        from devkit import factories
        from protocol import builders
        draft = RatingDraft("staff", Level.SATISFIED, Channel.TOUCH, factories.staff())
        for ob in self.terms:
            t = ob.term
            t.outbox._db.execute("PRAGMA synchronous=OFF")
            try:
                for _ in range(n):
                    t.outbox.add("rating", lambda rid, seq, ts: builders.rating(draft, t.origin, rid, seq, ts))
            finally:
                t.outbox._db.execute("PRAGMA synchronous=FULL")
        os.sync()
        return n * len(self.terms)

    def start(self, own_threads: bool = False) -> float:
        if not own_threads and not self.drivers:
            self.drivers = [Driver(name=f"driver-{k}") for k in range(DRIVERS)]
        for i, ob in enumerate(self.terms):
            ob.term.start(None if own_threads else self.drivers[i % len(self.drivers)])
        return time.time()

    def stop(self) -> int:
        for ob in self.terms:
            ob.term.stop()
        for d in self.drivers:
            d.stop()
        self.drivers = []
        return len(self.terms)

    def online(self) -> int:
        return sum(1 for ob in self.terms if ob.term.online)

    def pending(self) -> int:
        return sum(ob.term.outbox.counts().pending for ob in self.terms)

    def counts(self) -> dict:
        """Outbox rows still held: pending and quarantined, summed over this process's terminals."""
        cs = [ob.term.outbox.counts() for ob in self.terms]
        return {"pending": sum(c.pending for c in cs), "quarantined": sum(c.quarantined for c in cs)}

    def set_citizens(self, on: bool) -> bool:
        self.citizens = on
        return on

    def collect(self) -> dict:
        """Committed ids, latencies, and ids still awaiting a receipt; the lists are cleared."""
        with self.lock:
            out = {"ids": self.ids, "latencies": self.latencies, "unreceipted_presses": len(self.pressed)}
            self.ids, self.latencies = [], []
        return out

    def awaiting(self) -> int:
        """Presses committed and not yet receipted."""
        with self.lock:
            return len(self.pressed)

    def stats(self) -> dict:
        status = Path("/proc/self/status").read_text()
        field = lambda k: int(next(l for l in status.splitlines() if l.startswith(k)).split()[1])  # noqa: E731
        return {"rss_mb": field("VmRSS:") / 1024, "threads": field("Threads:"),
                "fds": len(os.listdir("/proc/self/fd")), "terminals": len(self.terms),
                "cpu_s": sum(os.times()[:2])}


SWITCH_INTERVAL_S = 0.05  # the GIL switch interval in a simulator process (default 0.005: see serve)
SLOW_S = 0.2  # stalls this long are logged (what a latency spike in the steady run can be traced to)


def slow(what: str, t0: float) -> None:
    took = time.monotonic() - t0
    if took >= SLOW_S:
        logging.warning("slow: %s took %.0f ms", what, took * 1000)


def watch_gc() -> None:
    """Log garbage-collector passes that stop this process's threads for SLOW_S or longer."""
    started = [0.0]

    def callback(phase: str, info: dict) -> None:
        if phase == "start":
            started[0] = time.monotonic()
        else:
            slow(f"gc generation {info['generation']}", started[0])

    gc.callbacks.append(callback)


def serve(conn, log_path: str) -> None:
    """The process's command loop: (name, args) in, ("ok", value) or ("error", text) out."""
    raise_nofile()
    logging.basicConfig(filename=log_path, level=logging.WARNING,
                        format="%(asctime)s %(threadName)s %(name)s %(levelname)s: %(message)s")
    watch_gc()
    # ~105 threads share this process's GIL. Each thread waiting for it wakes every switch interval
    # (5 ms by default) to ask for it: when a broadcast (the catalog) wakes all 100 network threads at
    # once, those wake-ups and context switches took most of the CPU (perf: futex and task switching, 75 %
    # system time), the processes starved for ~45 s and every terminal missed its keepalive — twice, on a
    # slower day. A board runs one terminal and a handful of threads: this is the simulator's setting only.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    sim = Sim()
    commands = {"create": sim.create, "prefill": sim.prefill, "start": sim.start, "stop": sim.stop,
                "online": sim.online, "pending": sim.pending, "counts": sim.counts, "citizens": sim.set_citizens,
                "collect": sim.collect, "awaiting": sim.awaiting, "stats": sim.stats}
    while True:
        try:
            name, args = conn.recv()
        except EOFError:
            return
        if name == "exit":
            conn.send(("ok", None))
            return
        try:
            conn.send(("ok", commands[name](*args)))
        except Exception as e:  # noqa: BLE001 - the fleet reports it and stops
            logging.exception("command %s failed", name)
            conn.send(("error", f"{name}: {e!r}"))
