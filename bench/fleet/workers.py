"""Ledger ingest with 1, 2 and 4 worker processes on PostgreSQL, sharing through Mosquitto's shared
subscriptions (`devkit.cluster.mosquitto_deployment`).

A few raw paho publishers act as terminals: N hall ratings (QoS 1, not retained, pipelined) are pre-loaded
while the workers are paused (SIGSTOP: connected and subscribed, so Mosquitto queues each worker's share),
then the workers are let go (SIGCONT) and the clock runs until all N are in the record. While it runs,
the CPU time of every process (from /proc: the workers, PostgreSQL's backends, Mosquitto, the publishers)
and what PostgreSQL's client backends are doing (pg_stat_activity, sampled) are recorded: the bottleneck is
named from those, not guessed.

`python -m bench.fleet.workers [--quick]` prints the figures; `run(workdir, quick=...)` returns them.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from devkit import factories
from devkit.cluster import mosquitto_deployment
from protocol import codec

PUBLISHERS = 4
TICK = os.sysconf("SC_CLK_TCK")


def ratings(device: str, n: int) -> list[bytes]:
    return [codec.encode(factories.rating(device, seq=k + 1)) for k in range(n)]


def publish(port: int, device: str, payloads: list[bytes], done: threading.Event) -> None:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device}", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port)
    c.loop_start()
    topic = f"hcp/v1/C1/device/{device}/rating"
    infos = [c.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(120)
    c.disconnect()
    c.loop_stop()
    done.set()


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process and its waited-for children, in seconds (/proc/<pid>/stat)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(x) for x in fields[11:15]) / TICK  # utime stime cutime cstime


def postgres_pids(data_dir: Path) -> list[int]:
    """The postmaster of the cluster in `data_dir` and its children (backends, WAL writer, checkpointer)."""
    try:
        master = int((Path(data_dir) / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return []
    pids = [master]
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == master:
                    pids.append(int(d.name))
            except (OSError, ValueError, IndexError):
                continue
    return pids


def sample_activity(url: str, stop: threading.Event, seen: Counter) -> None:
    """What PostgreSQL's client backends are doing, sampled every 50 ms: state / wait event."""
    import psycopg
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        while not stop.wait(0.05):
            for state, wtype, wevent in conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"):
                seen[f"{state}:{wtype or 'CPU'}:{wevent or '-'}"] += 1


def one(root: Path, workers: int, n: int) -> dict:
    with mosquitto_deployment(root, workers=workers, db="postgres") as d:
        port = d.brokers[0][1]
        per = n // PUBLISHERS
        loads = [ratings(f"wb{k}", per) for k in range(PUBLISHERS)]
        total = per * PUBLISHERS
        watched = {f"worker{i}": p.pid for i, p in enumerate(d.procs)}
        watched["mosquitto"] = d.broker.proc.pid
        pg = postgres_pids(d.postgres.data)
        for p in d.procs:
            p.send_signal(signal.SIGSTOP)  # pre-load: Mosquitto queues each paused worker's share
        dones = []
        for k, load in enumerate(loads):
            ev = threading.Event()
            threading.Thread(target=publish, args=(port, f"wb{k}", load, ev), daemon=True).start()
            dones.append(ev)
        for ev in dones:
            if not ev.wait(300):
                raise RuntimeError("the publishers did not finish within 300 s")
        before = {k: cpu_seconds(p) for k, p in watched.items()}
        pg_before = sum(cpu_seconds(p) for p in pg)
        own_before = time.process_time()
        stop, seen = threading.Event(), Counter()
        sampler = threading.Thread(target=sample_activity, args=(d.db_url, stop, seen), daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        for p in d.procs:
            p.send_signal(signal.SIGCONT)
        import psycopg
        with psycopg.connect(d.db_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
            while conn.execute("SELECT count(*) FROM ratings").fetchone()[0] < total:
                if time.perf_counter() - t0 > 600:
                    raise RuntimeError(f"{workers} worker(s): not all {total} ratings stored within 600 s")
                time.sleep(0.02)
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join(5)
        cpu = {k: round(cpu_seconds(p) - before[k], 2) for k, p in watched.items()}
        cpu["postgres"] = round(sum(cpu_seconds(p) for p in postgres_pids(d.postgres.data)) - pg_before, 2)
        cpu["bench"] = round(time.process_time() - own_before, 2)  # this process: polling and sampling
        samples = sum(seen.values()) or 1
        return {"rate": total / elapsed, "elapsed_s": elapsed, "n": total, "cpu_s": cpu,
                "pg_activity": {k: round(v / samples, 3) for k, v in seen.most_common(6)}}


def bottleneck(runs: dict[int, dict]) -> str:
    """The bottleneck in words, from the CPU accounting and PostgreSQL's wait events of the largest run."""
    w = max(runs)
    r = runs[w]
    cpu, elapsed = r["cpu_s"], r["elapsed_s"]
    ncpu = os.cpu_count() or 1
    busy = sum(cpu.values()) / (elapsed * ncpu)
    workers = sum(v for k, v in cpu.items() if k.startswith("worker"))
    waiting = sum(v for k, v in r["pg_activity"].items() if k.startswith("idle in transaction"))
    locks = sum(v for k, v in r["pg_activity"].items() if ":Lock:" in k)
    scaling = {n: runs[n]["rate"] / runs[min(runs)]["rate"] for n in sorted(runs)}
    verdict = (f"CPU: the machine's {ncpu} CPUs were {busy:.0%} busy with {w} workers, "
               f"{workers / max(sum(cpu.values()), 1e-9):.0%} of that in the ledger workers' Python"
               if busy >= 0.75 else f"not CPU ({busy:.0%} of {ncpu} CPUs busy with {w} workers)")
    return (f"{verdict}; PostgreSQL's backends were waiting for the workers (idle in transaction) in "
            f"{waiting:.0%} of samples and on row locks in {locks:.0%}: the workers' per-record statements, not "
            f"the database, set the pace. Scaling vs 1 worker: " +
            ", ".join(f"{n}: {s:.2f}x" for n, s in scaling.items()) +
            f". CPU s during the {w}-worker run: workers {workers:.1f}, postgres {cpu['postgres']:.1f}, "
            f"mosquitto {cpu['mosquitto']:.1f}, bench {cpu['bench']:.1f}")


def run(workdir: Path, *, quick: bool) -> dict:
    n = 4000 if quick else 20000
    runs = {w: one(Path(workdir) / f"workers-{w}", w, n) for w in (1, 2, 4)}
    return {"ledger_workers_scaling": {str(w): round(r["rate"], 1) for w, r in runs.items()},
            "ledger_workers_bottleneck": bottleneck(runs),
            "ledger_workers_detail": {str(w): r for w, r in runs.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4,000 ratings per run instead of 20,000")
    ap.add_argument("--workdir", default="/tmp/hcp-bench-workers")
    args = ap.parse_args()
    print(json.dumps(run(Path(args.workdir), quick=args.quick), indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
