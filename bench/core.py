"""Core benchmarks (issue 2): each figure beside its baseline, measured in the same run.

- tap_to_durable_*      rating input event → committed outbox row    | baseline sqlite_commit_p99_ms
- case_to_ready_*       case published to the broker → state ready   | baseline qrcode_default_ms
                        with the QR matrix computed
- drain_ratings_per_s   10,000 queued ratings → ledger receipts      | baseline raw_paho_msgs_per_s
- bytes_written_per_rating (from /proc/self/io), headless_rss_mb
"""
from __future__ import annotations

import os
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import qrcode
from paho.mqtt.enums import CallbackAPIVersion

from center.ledger import query
from device import qr
from device.machine import CaseOpened, LevelPressed, Phase
from device.model import Case
from device.terminal import Terminal
from devkit import factories, terminals
from devkit.broker import Broker
from devkit.center import Center
from devkit.terminals import terminal_config
from devkit.waiting import wait_for
from protocol import builders
from protocol.transport import no_delay
from protocol.values import Channel, Level

STAFF = factories.staff()
N_TAPS = 500
N_CASES = 300
N_DRAIN = 10_000


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def case(i: int, prefix: str = "B") -> Case:
    return factories.case_model(f"{prefix}{i:06d}")


def start_terminal(port: int, data: Path, name: str, **env: str) -> Terminal:
    return terminals.start_terminal(terminal_config(port, data, HCP_DEVICE_ID=name, HCP_DEVICE_LOG_LEVEL="ERROR",
                                                    **env), name)


# ---- baselines --------------------------------------------------------------------------------

def sqlite_commit_ms(path: Path, n: int = 2000) -> list[float]:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, payload BLOB)")
    payload = b"x" * 300
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        db.execute("BEGIN")
        db.execute("INSERT INTO t (payload) VALUES (?)", (payload,))
        db.execute("COMMIT")
        out.append((time.perf_counter() - t0) * 1000)
    db.close()
    return out


def raw_paho_rate(port: int, n: int, payload: bytes, inflight: int) -> float:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(inflight)
    c.on_socket_open = no_delay
    done = threading.Event()
    acked = [0]

    def on_publish(*_):
        acked[0] += 1
        if acked[0] == n:
            done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", port)
    c.loop_start()
    t0 = time.perf_counter()
    for _ in range(n):
        c.publish("bench/raw", payload, qos=1)
    done.wait(120)
    rate = n / (time.perf_counter() - t0)
    c.disconnect()
    c.loop_stop()
    return rate


# ---- figures ----------------------------------------------------------------------------------

def tap_to_durable(t: Terminal) -> list[float]:
    """Input event handed to the core → watcher sees THANKS (called right after the commit returned)."""
    committed = threading.Event()
    stamp = [0.0]

    def watch(snap):
        s = snap.state
        if s.phase == Phase.THANKS and not committed.is_set():
            stamp[0] = time.perf_counter()
            committed.set()

    t.watch(watch)
    out = []
    for i in range(N_TAPS):
        c = case(i, "TAP")
        t.submit(CaseOpened(c, qr=t.dynamic_qr(c)))
        wait_for(lambda: t.state.phase == Phase.CASE and t.state.case.id == c.id, what="case")
        committed.clear()
        t0 = time.perf_counter()
        t.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))
        committed.wait(10)
        out.append((stamp[0] - t0) * 1000)
    return out


def case_to_ready(t: Terminal, center: Center) -> tuple[list[float], str]:
    """As at a real window: a case arrives, the citizen rates it, the next case arrives."""
    ready = threading.Event()
    stamp = [0.0]
    want = [""]

    def watch(snap):
        s = snap.state
        if s.phase == Phase.CASE and s.case and s.case.id == want[0] and s.qr is not None:
            stamp[0] = time.perf_counter()
            ready.set()

    t.watch(watch)
    out, url = [], ""
    for i in range(N_CASES):
        want[0] = f"RDY{i:06d}"
        ready.clear()
        t0 = time.perf_counter()
        center.case(want[0])  # returns once the broker has the message (PUBACK)
        ready.wait(10)
        out.append((stamp[0] - t0) * 1000)
        url = t.state.qr.url
        t.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))
        wait_for(lambda: t.state.phase == Phase.THANKS, what="rated")
    return out, url


def qr_times(url: str, n: int = 50) -> tuple[float, float]:
    qrcode.make(url)
    qr.matrix(url)
    t0 = time.perf_counter()
    for _ in range(n):
        qrcode.make(url)
    default = (time.perf_counter() - t0) / n * 1000
    t0 = time.perf_counter()
    for _ in range(n):
        qr.matrix(url)
    fast = (time.perf_counter() - t0) / n * 1000
    return default, fast


def fill_outbox(t: Terminal, n: int) -> None:
    from device import machine
    draft = machine.RatingDraft("staff", Level.SATISFIED, Channel.TOUCH, STAFF)
    for _ in range(n):
        t.outbox.add("rating", lambda rid, seq, ts: builders.rating(draft, t.origin, rid, seq, ts))


def write_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def headless_rss_mb(port: int, data: Path) -> float:
    env = {**os.environ, "HCP_MQTT_PORT": str(port), "HCP_DEVICE_DATA_DIR": str(data), "HCP_DEVICE_ID": "rss",
           "HCP_CENTER_ID": "C1", "HCP_CENTER_WINDOW": "W01", "HCP_DEVICE_LOG_LEVEL": "ERROR"}
    p = subprocess.Popen([sys.executable, "-m", "device"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, env=env, text=True)
    center = Center(port)
    try:
        for i in range(30):  # a realistic working state: cases shown, QR codes rendered, ratings taken
            center.case(f"RSS{i:04d}")
            time.sleep(0.05)
            p.stdin.write("1\n")
            p.stdin.flush()
            time.sleep(0.05)
        time.sleep(1)
        status = Path(f"/proc/{p.pid}/status").read_text()
        return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024
    finally:
        center.close()
        p.terminate()
        p.wait(10)


def run() -> dict[str, float]:
    work = Path(tempfile.mkdtemp(prefix="hcp-bench-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    r: dict[str, float] = {}
    base = sqlite_commit_ms(work / "bare.db")
    r["sqlite_commit_p50_ms"] = statistics.median(base)
    r["sqlite_commit_p99_ms"] = pct(base, 99)
    with Broker(workdir=str(work)) as broker:
        ledger_db = work / "ledger.db"
        ledger = subprocess.Popen([sys.executable, "-m", "center.ledger", "--port", str(broker.port), "--db",
                                   str(ledger_db)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        center = Center(broker.port, center="C1")
        t = start_terminal(broker.port, work / "tap", "bench-tap", HCP_RATING_THANKS_S="1")
        wait_for(lambda: t.online, what="online")
        w0 = write_bytes()
        taps = tap_to_durable(t)
        r["bytes_written_per_rating"] = (write_bytes() - w0) / N_TAPS
        r["tap_to_durable_p50_ms"] = statistics.median(taps)
        r["tap_to_durable_p99_ms"] = pct(taps, 99)
        ready, url = case_to_ready(t, center)
        r["case_to_ready_p50_ms"] = statistics.median(ready)
        r["case_to_ready_p99_ms"] = pct(ready, 99)
        r["qrcode_default_ms"], r["qr_matrix_ms"] = qr_times(url)
        r["qr_speedup_x"] = r["qrcode_default_ms"] / r["qr_matrix_ms"]
        t.stop()

        payload = b"x" * 330  # about the size of one rating message
        r["raw_paho_msgs_per_s"] = raw_paho_rate(broker.port, N_DRAIN, payload, inflight=100)
        drain = Terminal(terminal_config(broker.port, work / "drain", HCP_DEVICE_ID="bench-drain"), "bench-drain")
        fill_outbox(drain, N_DRAIN)
        before = query(ledger_db, "SELECT count(*) FROM ratings")[0][0]
        t0 = time.perf_counter()
        drain.start()
        wait_for(lambda: drain.outbox.counts().pending == 0, timeout=300, what="drained")
        r["drain_ratings_per_s"] = N_DRAIN / (time.perf_counter() - t0)
        assert query(ledger_db, "SELECT count(*) FROM ratings")[0][0] - before == N_DRAIN
        r["drain_vs_raw_paho"] = r["drain_ratings_per_s"] / r["raw_paho_msgs_per_s"]
        drain.stop()
        r["headless_rss_mb"] = headless_rss_mb(broker.port, work / "rss")
        center.close()
        ledger.terminate()
        ledger.wait(10)
    return r


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:<28}{v:>12.3f}")
