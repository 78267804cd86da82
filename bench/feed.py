"""The case feed's latency (issue 11): `case_feed_p99_ms` = an HTTP `PUT /api/v1/windows/{w}/case` to the
center service → the `case` message arriving at a subscriber on the broker (what a terminal's client sees).

The real service runs in this process (`CenterService`: the store on SQLite, the notices sender, uvicorn with
the phone pages and the feed, woken after each commit) against a real Mosquitto; the subscriber is a plain
paho client. Each case is a new one (a new id, so every PUT publishes), the windows taken in turn; a
warm-up is not counted; the next case is put once the sender has marked the last one sent (cases open
seconds apart at a real window; otherwise each PUT would wait behind the previous "sent" write). The clock
runs from just before the PUT to the subscriber's callback (the PUT's own answer may come before or after).
At the end a fresh subscriber checks that the last case of each window is the retained message.
"""
from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

CENTER = "C1"
WINDOWS = tuple(f"W{i:02d}" for i in range(1, 5))
WARMUP = 20


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def _body(case_id: str) -> dict:
    return {"id": case_id, "item_code": "310115-001", "item_name": "居住证办理",
            "staff": {"id": "S0101", "name": "王芳", "number": "0101"},
            "applicant": {"token": "ap_5f0c2a9e71b3d846", "display": "张*"}, "phone": "13912345678"}


def case_feed_times(work: Path, n: int = 300, db: str | None = None) -> list[float]:
    """n PUT-to-subscriber times in ms (after WARMUP uncounted cases); `db`: a database URL instead of the
    demo's SQLite file (e.g. a PostgreSQL database)."""
    import json

    import httpx
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from center.apikeys import create_key
    from center.service import CenterService, demo_options
    from devkit.broker import Broker, free_port
    from protocol import topics
    from protocol.transport import no_delay

    (work / "broker").mkdir(parents=True, exist_ok=True)
    with Broker(workdir=str(work / "broker")) as broker:
        options = replace(demo_options(work / "center", broker.port, free_port(), center=CENTER), feed_key=b"",
                          sms=None, windows=frozenset(WINDOWS))
        if db:
            options = replace(options, db=db)
        service = CenterService(options)  # its feed, woken after each commit, as in production
        service.start()
        _, key = create_key(service.store, "bench")
        arrived: dict[str, float] = {}
        cv = threading.Condition()

        def on_message(client, userdata, msg) -> None:
            if not msg.payload:
                return
            t = time.perf_counter()
            case_id = json.loads(msg.payload)["case"]["id"]
            with cv:
                arrived[case_id] = t
                cv.notify_all()

        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-feed-sub", protocol=mqtt.MQTTv5)
        sub.on_socket_open = no_delay
        sub.on_message = on_message
        subscribed = threading.Event()
        sub.on_subscribe = lambda *a: subscribed.set()
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        sub.subscribe(f"{topics.PREFIX}/{CENTER}/window/+/case", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("the bench subscriber could not subscribe")
        out: list[float] = []
        try:
            with httpx.Client(base_url=f"{service.web.url}/api/v1", timeout=10,
                              headers={"Authorization": f"Bearer {key}"}) as http:
                last: dict[str, str] = {}
                for i in range(WARMUP + n):
                    window, case_id = WINDOWS[i % len(WINDOWS)], f"F{i:06d}"
                    t0 = time.perf_counter()
                    answer = http.put(f"/windows/{window}/case", json=_body(case_id))
                    if answer.status_code != 200:
                        raise RuntimeError(f"PUT case {case_id}: {answer.status_code} {answer.text[:200]}")
                    with cv:
                        if not cv.wait_for(lambda: case_id in arrived, timeout=10):
                            raise RuntimeError(f"case {case_id} never reached the subscriber")
                    if i >= WARMUP:
                        out.append((arrived[case_id] - t0) * 1000)
                    last[window] = case_id
                    # Cases open seconds apart at a real window: let the sender finish this one (its
                    # "sent" mark is a write too) so each case is timed alone, not queued behind the last.
                    deadline = time.monotonic() + 10
                    while service.notices.sent < i + 1 and time.monotonic() < deadline:
                        time.sleep(0.0005)
            _check_retained(broker.port, last)
        finally:
            sub.disconnect()
            sub.loop_stop()
            service.stop()
    return out


def _check_retained(port: int, last: dict[str, str]) -> None:
    """A client connecting now gets each window's last case as the retained message."""
    from devkit.center import Center
    from devkit.waiting import wait_for
    from protocol import topics
    fresh = Center(port, center=CENTER)
    try:
        for window, case_id in last.items():
            topic = topics.Topics(CENTER, window, "-").case
            wait_for(lambda: fresh.messages_on(topic), what=f"the retained case of {window}", timeout=10)
            got = fresh.messages_on(topic)[-1]["case"]["id"]
            if got != case_id:
                raise RuntimeError(f"{window} retains {got}, not the last case {case_id}")
    finally:
        fresh.close()


def case_feed_p99_ms(n: int = 300, work: Path | None = None, db: str | None = None) -> dict[str, float]:
    """{"case_feed_p99_ms", "case_feed_p50_ms"} over n ≥ 200 cases (target: p99 ≤ 20 ms)."""
    if n < 200:
        raise ValueError("case_feed_p99_ms needs at least 200 cases")
    own = work is None
    work = work or Path(tempfile.mkdtemp(prefix="hcp-bench-feed-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    try:
        times = case_feed_times(work, n, db)
        return {"case_feed_p99_ms": pct(times, 99), "case_feed_p50_ms": statistics.median(times)}
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    for k, v in case_feed_p99_ms().items():
        print(f"{k:<24}{v:>10.3f}")


def center_rss_mb(settle_s: float = 5.0) -> float:
    """Resident memory of the whole center service (ledger intake, notices, phone pages, console, feed, SMS and
    follow-up workers) idle: `python -m center serve --demo` against a real broker, read from /proc after it
    answered /healthz and sat still `settle_s` seconds."""
    import subprocess
    import sys
    import urllib.request
    from devkit.broker import Broker, free_port
    work = Path(tempfile.mkdtemp(prefix="hcp-bench-rss-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    (work / "broker").mkdir()
    broker = Broker(workdir=str(work / "broker")).start()
    web = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "center", "serve", "--demo", "--mqtt-port", str(broker.port),
                             "--web-port", str(web), "--data", str(work / "center")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{web}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the center service did not start")
                time.sleep(0.2)
        time.sleep(settle_s)
        status = Path(f"/proc/{proc.pid}/status").read_text()
        kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
        return kb / 1024
    finally:
        proc.terminate()
        proc.wait(20)
        broker.stop()
        shutil.rmtree(work, ignore_errors=True)


def run() -> dict[str, float]:
    r = case_feed_p99_ms()
    r["center_rss_mb"] = center_rss_mb()
    return r
