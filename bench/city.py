"""City delivery benchmark (issue 11).

- city_replay_per_s   ratings stored while the city was down (each already offered once into the outage, no
                      receipt) → all receipted by the city once it is back: ratings per second from the worker's
                      (re)start to the last receipt | baseline drain_ratings_per_s (bench/core.py)

Real parts: the center store (SQLite, as a hall runs it), a Mosquitto for the city, and the city stand-in in
its own process (`python -m center.city.standin`, SQLite), over MQTT QoS 1 with receipts after COMMIT.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import update

from center.city import delivery
from center.city.delivery import CityDelivery, CityLink
from center.ledger.record import Record
from center.store import Store
from center.store.tables import city_delivery
from devkit.broker import Broker
from devkit.waiting import wait_for
from protocol import ids

N_REPLAY = int(os.environ.get("BENCH_CITY_N", "20000"))
CENTER = "C1"


def _seed(store: Store, n: int) -> None:
    """n ratings from 10 terminals through the record's door, then the outage: all offered, none receipted."""
    record = Record(store)
    now = time.time()
    with store.write() as conn:
        for i in range(n):
            device = f"t{i % 10}"
            record.accept(conn, {"v": 1, "type": "rating", "id": ids.uuid7(), "device": device, "center": CENTER,
                                 "window": "W01", "seq": i // 10 + 1, "ts": ids.wall_time(), "kind": "hall",
                                 "level": "satisfied", "channel": "touch"}, now)
        delivery.backfill(conn, now)   # a no-op where Record.accept owes the city itself
        conn.execute(update(city_delivery).values(state="offered", attempts=1, offered_at=now, next_try=now + 600))


def city_replay_per_s(work: Path | None = None, n: int = N_REPLAY) -> float:
    """Ratings per second receipted by the city after its outage (see the module doc)."""
    own = work is None
    work = Path(work or tempfile.mkdtemp(prefix="hcp-bench-city-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    (work / "city-broker").mkdir(parents=True, exist_ok=True)
    store = Store(work / "center.db")
    standin = None
    try:
        _seed(store, n)
        with Broker(workdir=str(work / "city-broker")) as broker:
            log = open(work / "standin.log", "wb")
            standin = subprocess.Popen([sys.executable, "-m", "center.city.standin", "--port", str(broker.port),
                                        "--db", str(work / "city.db")], stdout=log, stderr=subprocess.STDOUT)
            wait_for(lambda: b"city stand-in on" in (work / "standin.log").read_bytes(), 60, "the city stand-in")
            t0 = time.perf_counter()
            worker = CityDelivery(store, CityLink("127.0.0.1", broker.port, f"city/v1/{CENTER}/"), CENTER,
                                  backfill_at_start=False).start()
            try:
                def done() -> bool:
                    with store.read() as conn:
                        return delivery.states(conn) == {"receipted": n}
                wait_for(done, 600, "every rating receipted by the city")
                rate = n / (time.perf_counter() - t0)
            finally:
                worker.stop()
    finally:
        if standin is not None:
            standin.terminate()
            standin.wait(10)
        store.close()
        if own:
            shutil.rmtree(work, ignore_errors=True)
    return rate


def run() -> dict[str, float]:
    return {"city_replay_per_s": city_replay_per_s()}


if __name__ == "__main__":
    print(run())
