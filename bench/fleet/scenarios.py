"""The fleet's scenarios. Each returns its figures (flat keys for bench/fleet.json) and its time series
(for the plots), and checks its invariant: every rating id committed by a terminal is in the record
exactly once, and every terminal's outbox is empty at the end."""
from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.fleet.deploy import ledger_pids, rss_mb, wait_until
from bench.fleet.feed import CaseFeed
from bench.fleet.fleet import Fleet


@dataclass(frozen=True)
class Plan:
    """How big each scenario is. `full` is the issue's; `quick` and `smoke` are for development and tests."""

    steady_n: int = 2000
    steady_every_s: tuple[float, float] = (120.0, 300.0)   # a case (and its rating) per window every 2–5 min
    steady_s: float = 600.0
    storm_n: int = 2000
    storm_backlog: int = 100
    city_n: int = 100_000
    kill_n: int = 2000
    kill_backlog: int = 20
    slow_n: int = 2000
    slow_backlog: int = 10
    slow_lock_s: float = 60.0
    settle_timeout_s: float = 1200.0


FULL = Plan()
QUICK = Plan(steady_n=300, steady_every_s=(20, 40), steady_s=60, storm_n=300, storm_backlog=100, city_n=10_000,
             kill_n=300, kill_backlog=20, slow_n=300, slow_backlog=10, slow_lock_s=15, settle_timeout_s=600)
SMOKE = Plan(steady_n=6, steady_every_s=(3, 5), steady_s=8, storm_n=6, storm_backlog=20, city_n=300, kill_n=6,
             kill_backlog=30, slow_n=6, slow_backlog=10, slow_lock_s=3, settle_timeout_s=240)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def invariant(db_url: str, tag: str, ids: list[str]) -> dict[str, int]:
    """Lost: committed on a terminal, not in the record. Duplicated: rows beyond one per id. Extra: rows from
    these terminals that no terminal committed (should not exist)."""
    from center.ledger import query
    rows = [r[0] for r in query(db_url, "SELECT id FROM ratings WHERE device LIKE :p", {"p": f"{tag}-%"})]
    stored = Counter(rows)
    committed = set(ids)
    return {"lost": len(committed - stored.keys()), "duplicated": sum(c - 1 for c in stored.values() if c > 1),
            "extra": len(stored.keys() - committed), "committed": len(committed)}


class Sampler:
    """Every `every` s in the background: (t since start, outbox rows held, ledger RSS MB summed)."""

    def __init__(self, fleet: Fleet, every: float = 1.0):
        self.fleet, self.every = fleet, every
        self.t0 = time.monotonic()
        self.rows: list[tuple[float, int, float]] = []
        self.marks: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def mark(self, what: str) -> None:
        self.marks.append((round(time.monotonic() - self.t0, 2), what))

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                held = self.fleet.counts()["pending"]
            except Exception:  # noqa: BLE001 - sampling must not end the scenario
                held = -1
            self.rows.append((round(time.monotonic() - self.t0, 2), held, sum(rss_mb(p) for p in ledger_pids())))
            self._stop.wait(self.every)

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join(5)
        return {"t": [r[0] for r in self.rows], "outbox": [r[1] for r in self.rows],
                "ledger_rss_mb": [r[2] for r in self.rows], "marks": self.marks}


def _settle(fleet: Fleet, timeout: float) -> float | None:
    """Seconds until every outbox is empty; None if not within `timeout`."""
    try:
        return wait_until(lambda: fleet.counts()["pending"] == 0, timeout, "every outbox empty", every=0.5)
    except TimeoutError:
        return None


def _finish(d, fleet: Fleet, name: str, out: dict) -> dict:
    """The invariant, fleet resources, and the outbox state at the end."""
    ids, _, _ = fleet.collect()
    out.setdefault("_ids", []).extend(ids)
    inv = invariant(d.db_url, fleet.tag, out.pop("_ids"))
    c = fleet.counts()
    out.update({f"{name}_lost": inv["lost"], f"{name}_duplicated": inv["duplicated"],
                f"{name}_extra": inv["extra"], f"{name}_ratings": inv["committed"],
                f"{name}_outbox_left": c["pending"] + c["quarantined"]})
    return out


def _resources(fleet: Fleet, name: str) -> dict:
    s = fleet.stats()
    return {f"{name}_sim_processes": s["processes"], f"{name}_sim_threads": s["threads"],
            f"{name}_sim_fds": s["fds"], f"{name}_sim_rss_mb": round(s["rss_mb"], 1),
            f"{name}_sim_rss_per_terminal_mb": round(s["rss_mb"] / fleet.n, 3)}


# ---- 1. steady ----------------------------------------------------------------------------------------

def steady(d, root: Path, plan: Plan) -> tuple[dict, dict]:
    out: dict = {}
    with Fleet(root / "steady", plan.steady_n, d.terminal_env(), tag="steady") as fleet:
        fleet.start()
        out["steady_connect_s"] = round(fleet.wait_online(), 2)
        out.update(_resources(fleet, "steady"))
        s0, t0 = fleet.stats(), time.monotonic()
        time.sleep(min(10.0, plan.steady_s / 4))
        s1 = fleet.stats()
        out["steady_idle_sim_cpu_cores"] = round((s1["cpu_s"] - s0["cpu_s"]) / (time.monotonic() - t0), 3)
        feed = CaseFeed(*d.brokers[0], d.center_id, d.mqtt_version)
        try:
            feed.setup(fleet.windows)
            fleet.citizens(True)
            sampler = Sampler(fleet, 2.0)
            c0, w0 = fleet.stats()["cpu_s"], time.monotonic()
            feed.run(fleet.windows, plan.steady_every_s, plan.steady_s)
            out["steady_sim_cpu_cores"] = round((fleet.stats()["cpu_s"] - c0) / (time.monotonic() - w0), 3)
            out["steady_cases_opened"] = feed.opened
        finally:
            feed.close()
        wait_until(lambda: fleet.collect_peek() == 0, plan.settle_timeout_s, "every press receipted")
        fleet.citizens(False)
        series = sampler.stop()
        ids, lat, open_ = fleet.collect()
        out["_ids"] = ids
        ms = [m for _, m in lat]
        out["steady_receipted"] = len(ms)
        if ms:
            out["steady_press_to_receipt_p50_ms"] = round(statistics.median(ms), 1)
            out["steady_press_to_receipt_p99_ms"] = round(pct(ms, 99), 1)
            out["steady_press_to_receipt_max_ms"] = round(max(ms), 1)
        start = min((w for w, _ in lat), default=0.0)
        series["latency"] = {"t": [round(w - start, 2) for w, _ in sorted(lat)], "ms": [m for _, m in sorted(lat)]}
        _settle(fleet, plan.settle_timeout_s)
        _finish(d, fleet, "steady", out)
    return out, series


# ---- 2. morning storm ----------------------------------------------------------------------------------

def storm(d, root: Path, plan: Plan) -> tuple[dict, dict]:
    out: dict = {}
    with Fleet(root / "storm", plan.storm_n, d.terminal_env(), tag="storm") as fleet:
        t0 = time.monotonic()
        out["storm_backlog"] = fleet.prefill(plan.storm_backlog)
        out["storm_prefill_s"] = round(time.monotonic() - t0, 1)
        sampler = Sampler(fleet, 1.0)
        sampler.mark("all reconnect")
        t0 = time.monotonic()
        fleet.start()
        out["storm_start_s"] = round(time.monotonic() - t0, 1)  # every terminal's threads started
        settle = _settle(fleet, plan.settle_timeout_s)
        if settle is not None:  # from the reconnect (the start of every terminal) until every outbox is empty
            out["storm_settle_s"] = round(time.monotonic() - t0, 1)
            out["storm_ratings_per_s"] = round(out["storm_backlog"] / out["storm_settle_s"], 1)
        else:
            out["storm_settle_s"] = None
        out.update(_resources(fleet, "storm"))
        series = sampler.stop()
        _finish(d, fleet, "storm", out)
    return out, series


# ---- 4. kill -9 of the broker and of a ledger worker mid-drain -------------------------------------------

def kill(d, root: Path, plan: Plan) -> tuple[dict, dict]:
    out: dict = {}
    with Fleet(root / "kill", plan.kill_n, d.terminal_env(), tag="kill") as fleet:
        total = fleet.prefill(plan.kill_backlog)
        out["kill_backlog"] = total
        sampler = Sampler(fleet, 0.5)
        t0 = time.monotonic()
        fleet.start()
        wait_until(lambda: fleet.counts()["pending"] <= 0.7 * total, plan.settle_timeout_s, "30 % drained", 0.2)
        sampler.mark("kill -9 broker")
        d.kill_broker(0)
        time.sleep(2)
        d.restart_broker(0)
        sampler.mark("broker back")
        try:
            wait_until(lambda: fleet.counts()["pending"] <= 0.4 * total, 120, "60 % drained", 0.2)
        except TimeoutError:
            pass
        sampler.mark("kill -9 ledger worker")
        d.kill_worker(0)
        time.sleep(2)
        d.restart_worker(0)
        sampler.mark("worker back")
        settle = _settle(fleet, plan.settle_timeout_s)
        out["kill_settle_s"] = round(time.monotonic() - t0, 1) if settle is not None else None
        series = sampler.stop()
        _finish(d, fleet, "kill", out)
    return out, series


# ---- 5. slow ledger: PostgreSQL held by a lock ---------------------------------------------------------

def slow(d, root: Path, plan: Plan) -> tuple[dict, dict]:
    import psycopg
    out: dict = {"slow_lock_s": plan.slow_lock_s}
    with Fleet(root / "slow", plan.slow_n, d.terminal_env(), tag="slow") as fleet:
        fleet.prefill(plan.slow_backlog)
        sampler = Sampler(fleet, 1.0)
        base = sum(rss_mb(p) for p in ledger_pids())
        lock = psycopg.connect(d.db_url.replace("+psycopg", ""))
        locked_at = time.monotonic()
        try:
            lock.execute("LOCK TABLE ratings IN ACCESS EXCLUSIVE MODE")  # held until the rollback below
            sampler.mark("ratings table locked")
            fleet.start()
            feed = CaseFeed(*d.brokers[0], d.center_id, d.mqtt_version)
            try:
                feed.setup(fleet.windows)
                fleet.citizens(True)
                feed.run(fleet.windows, plan.steady_every_s, plan.slow_lock_s)
            finally:
                feed.close()
            out["slow_backlog_at_release"] = fleet.counts()["pending"]
        finally:
            lock.rollback()
            lock.close()
        out["slow_lock_held_s"] = round(time.monotonic() - locked_at, 1)  # the feed's closes run past slow_lock_s
        sampler.mark("lock released")
        t0 = time.monotonic()
        wait_until(lambda: fleet.collect_peek() == 0, plan.settle_timeout_s, "every press receipted")
        settle = _settle(fleet, plan.settle_timeout_s)
        out["slow_settle_after_release_s"] = round(time.monotonic() - t0, 1) if settle is not None else None
        fleet.citizens(False)
        series = sampler.stop()
        rss = [r for r in series["ledger_rss_mb"] if r > 0]
        out["slow_ledger_rss_base_mb"] = round(base, 1)
        out["slow_ledger_rss_peak_mb"] = round(max(rss, default=0.0), 1)
        out["slow_backlog_peak"] = max(series["outbox"], default=0)
        _finish(d, fleet, "slow", out)
    return out, series


# ---- 3. city link down, then back ----------------------------------------------------------------------

def city(root: Path, plan: Plan) -> tuple[dict, dict]:
    """The center's city delivery (center/city) with the city away while `city_n` ratings are stored through
    the record's door, then the city's broker and its stand-in come up: replay rate, nothing lost."""
    import subprocess
    import sys
    from center.city.delivery import CityDelivery, CityLink, states
    from center.ledger.record import Record
    from center.store import Store
    from devkit.broker import Broker, free_port
    from devkit.postgres import Postgres
    from protocol import ids as pids
    work = root / "city"
    (work / "broker").mkdir(parents=True, exist_ok=True)
    n = plan.city_n
    port = free_port()
    out: dict = {"city_ratings": n}
    with Postgres() as pg:
        store = Store(pg.url)
        worker = CityDelivery(store, CityLink("127.0.0.1", port, "city/v1/C1/"), "C1").start()  # the city is away
        record = Record(store)
        sent: list[str] = []
        try:
            t0 = time.monotonic()
            for start in range(0, n, 1000):
                now = time.time()
                with store.write() as conn:
                    for i in range(start, min(n, start + 1000)):
                        rid = pids.uuid7()
                        sent.append(rid)
                        record.accept(conn, {"v": 1, "type": "rating", "id": rid, "device": f"c{i % 50}",
                                             "center": "C1", "window": "W01", "seq": i // 50 + 1,
                                             "ts": pids.wall_time(), "kind": "hall", "level": "satisfied",
                                             "channel": "touch"}, now)
            out["city_store_s"] = round(time.monotonic() - t0, 1)
            with Broker(port, workdir=str(work / "broker")):
                log = open(work / "standin.log", "wb")
                standin = subprocess.Popen([sys.executable, "-m", "center.city.standin", "--port", str(port),
                                            "--db", str(work / "city.db")], stdout=log, stderr=subprocess.STDOUT)
                try:
                    wait_until(lambda: b"city stand-in on" in (work / "standin.log").read_bytes(), 60,
                               "the city stand-in")
                    up = time.monotonic()
                    wait_until(lambda: worker.counts()["receipted"] > 0, 120, "the first city receipt", 0.05)
                    first = time.monotonic()

                    def done() -> bool:
                        with store.read() as conn:
                            return states(conn) == {"receipted": n}
                    wait_until(done, plan.settle_timeout_s, "every rating receipted by the city", 0.5)
                    end = time.monotonic()
                finally:
                    standin.terminate()
                    standin.wait(10)
        finally:
            worker.stop()
            store.close()
        city_store = Store(work / "city.db")
        try:
            from center.city.standin import stored_ids
            held = Counter(stored_ids(city_store))
        finally:
            city_store.close()
    out["city_reconnect_s"] = round(first - up, 1)
    out["city_replay_s"] = round(end - first, 1)
    out["city_replay_per_s"] = round(n / (end - first), 1)
    out["city_lost"] = len(set(sent) - held.keys())
    out["city_duplicated"] = sum(c - 1 for c in held.values() if c > 1)
    return out, {}
