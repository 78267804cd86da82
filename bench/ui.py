"""Kiosk UI benchmarks (`make bench` runs `run()`): real Kivy under SDL offscreen (Mesa llvmpipe), a real
Terminal and a real Mosquitto broker, the real Kivy main loop.

- touch_to_thanks_p99_ms: a simulated touch-up on a level button → the thank-you frame finished
  (glFinish after the frame's draw), the rating committed (the core commits before it shows thanks).
  Starts at the touch event inside Kivy: the input poll before it (≤ one frame) is not included.
- case_to_qr_visible_p99_ms: the center publishes a case → the frame showing that case's QR finished.
  One case in five arrives while the terminal sits idle at its low frame rate (`ui.idle_fps`); those
  are also reported alone (case_to_qr_visible_from_idle_fps_p99_ms).
- idle_cpu_percent: `python -m ui` up on the idle screen, nothing happening, over 60 s (percent of
  one core, all of the process's threads: UI, core, MQTT, courier).
- ui_rss_mb: that process's resident memory at the end.
- start_to_interactive_s: process start → READY=1 on the systemd notify socket (sent after the first
  interactive frame).
Baselines from the same run: a bare Kivy app (one label) for start-up and idle CPU, and the kiosk's
idle CPU with the idle frame-rate drop switched off.
Environment: BENCH_UI_ROUNDS (default 200), BENCH_UI_IDLE_S (default 60), BENCH_DIR (where the
outboxes go, default /var/tmp: a real disk, so the commit before "thank you" pays its fsync).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else values[0]


# ---- the probe: runs in its own process (one Kivy window per process) ------------------------------

def probe(port: int, rounds: int, data_dir: str) -> None:
    from ui import env
    env.prepare_offscreen(800, 480)
    from kivy.clock import Clock
    from kivy.core.window import Window
    from kivy.graphics.opengl import glFinish
    from kivy.tests.common import UnitTestTouch

    from device.terminal import Terminal
    from devkit.center import Center
    from devkit.terminals import terminal_config
    from protocol.values import Level
    from ui.app import KioskApp
    from ui.present import Screen

    cfg = terminal_config(port, data_dir, HCP_DEVICE_ID="bench", HCP_RATING_THANKS_S="1",
                          HCP_UI_TOUCH_GUARD_MS="0", HCP_UI_IDLE_FPS="10", HCP_UI_IDLE_AFTER_S="1")
    term = Terminal(cfg, "bench")
    term.start()
    center = Center(port)
    center.catalog()
    center.duty()
    app = KioskApp(term)
    k = app.kiosk
    want: dict = {}
    got = {"qr": threading.Event(), "thanks": threading.Event()}
    case_ms: list[float] = []
    quiet_ms: list[float] = []
    touch_ms: list[float] = []

    def on_flip(*_):
        s, w = k.rendered_state, k.shown_widget
        if "case" in want and k.shown == Screen.CASE and s.case is not None and s.case.id == want["case"] \
                and w.qr._texture is not None and w.qr.modules is s.qr.modules:
            glFinish()
            ms = (time.perf_counter() - want.pop("case_t0")) * 1000
            (quiet_ms if want.pop("quiet") else case_ms).append(ms)
            want.pop("case")
            got["qr"].set()
        if "touch_t0" in want and k.shown == Screen.THANKS and s.last_rating_id != want["last_id"]:
            glFinish()
            touch_ms.append((time.perf_counter() - want.pop("touch_t0")) * 1000)
            got["thanks"].set()

    def touch(*_):
        button = next(b for b in k.shown_widget.level_buttons if b.level == Level.SATISFIED)
        x, y = button.to_window(*button.center)
        t = UnitTestTouch(x, y)
        want["last_id"] = term.state.last_rating_id
        want["touch_t0"] = time.perf_counter()
        t.touch_down()
        t.touch_up()

    def drive():
        try:
            while not (term.online and term.state.staff and term.state.catalog and k.shown == Screen.IDLE):
                time.sleep(0.05)
            time.sleep(0.5)
            for i in range(rounds):
                got["qr"].clear()
                got["thanks"].clear()
                quiet = i % 5 == 4  # every fifth case arrives at a terminal idle at its low frame rate
                if quiet:
                    end = time.monotonic() + 10
                    while not (k.shown == Screen.IDLE and Clock._max_fps == 10) and time.monotonic() < end:
                        time.sleep(0.05)
                    time.sleep(0.2)
                want["quiet"] = quiet
                want["case"] = f"B{i:05d}"
                want["case_t0"] = time.perf_counter()
                center.case(want["case"])
                if not got["qr"].wait(10):
                    raise RuntimeError(f"case {i} never showed its QR")
                time.sleep(0.05)
                Clock.schedule_once(touch, 0)
                if not got["thanks"].wait(10):
                    raise RuntimeError(f"rating {i} never showed thanks")
                time.sleep(0.05)
            print(json.dumps({"case_ms": case_ms, "quiet_ms": quiet_ms, "touch_ms": touch_ms}), flush=True)
        except Exception as e:  # noqa: BLE001
            print(json.dumps({"error": repr(e)}), flush=True)
        finally:
            Clock.schedule_once(lambda dt: app.stop(), 0)

    Window.bind(on_flip=on_flip)
    threading.Thread(target=drive, daemon=True).start()
    app.run()
    term.stop()
    center.close()


def bare_app() -> None:
    """Baseline: a bare Kivy app with one label, same environment, READY after its first frame."""
    from ui import env
    env.prepare_offscreen(800, 480)
    from kivy.app import App
    from kivy.core.window import Window
    from kivy.uix.label import Label

    from ui import sdnotify

    class Bare(App):
        def build(self):
            Window.bind(on_flip=self.first)
            return Label(text="rating")

        def first(self, *_):
            Window.unbind(on_flip=self.first)
            sdnotify.notify("READY=1")

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    Bare().run()


# ---- the runner -----------------------------------------------------------------------------------

def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _start_idle(cmd: list[str], env: dict, workdir: Path, idle_s: float) -> dict[str, float]:
    """Start a process, time READY=1, then measure its CPU over `idle_s`; returns figures."""
    sock_path = str(workdir / f"notify-{time.monotonic_ns()}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(60)
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env={**env, "NOTIFY_SOCKET": sock_path}, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while b"READY=1" not in sock.recv(4096):
            pass
        ready = time.monotonic() - t0
        time.sleep(2)
        c0, w0 = _cpu_ticks(proc.pid), time.monotonic()
        time.sleep(idle_s)
        c1, w1 = _cpu_ticks(proc.pid), time.monotonic()
        rss = _rss_mb(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        sock.close()
    return {"start_s": ready, "cpu_percent": 100 * (c1 - c0) / CLK_TCK / (w1 - w0), "rss_mb": rss}


def run() -> dict[str, float]:
    from devkit.broker import Broker
    from devkit.center import Center

    rounds = int(os.environ.get("BENCH_UI_ROUNDS", "200"))
    idle_s = float(os.environ.get("BENCH_UI_IDLE_S", "60"))
    work = Path(tempfile.mkdtemp(prefix="bench-ui-", dir=os.environ.get("BENCH_DIR", "/var/tmp")))
    base_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("HCP_", "KCFG_", "KIVY_", "SDL_", "NOTIFY_", "WATCHDOG_"))}
    base_env["PYTHONPATH"] = str(ROOT)
    results: dict[str, float] = {}
    (work / "broker").mkdir()
    with Broker(workdir=str(work / "broker")) as broker:
        out = subprocess.run([sys.executable, "-m", "bench.ui", "--probe", str(broker.port), str(rounds),
                              str(work / "probe")], env=base_env, cwd=ROOT, capture_output=True, text=True,
                             timeout=600)
        lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
        data = json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}
        if "error" in data:
            raise RuntimeError(f"UI probe failed: {data['error']}")
        results["touch_to_thanks_p99_ms"] = p99(data["touch_ms"])
        results["touch_to_thanks_median_ms"] = statistics.median(data["touch_ms"])
        results["case_to_qr_visible_p99_ms"] = p99(data["case_ms"] + data["quiet_ms"])
        results["case_to_qr_visible_median_ms"] = statistics.median(data["case_ms"] + data["quiet_ms"])
        results["case_to_qr_visible_from_idle_fps_p99_ms"] = p99(data["quiet_ms"])

        center = Center(broker.port, center="demo")
        center.catalog()
        center.duty()
        center.close()
        ui_env = {**base_env, "HCP_MQTT_PORT": str(broker.port), "HCP_DEVICE_ID": "bench-idle",
                  "HCP_DEVICE_DATA_DIR": str(work / "idle"), "HCP_DEVICE_LOG_LEVEL": "WARNING",
                  "KIVY_HOME": str(work / "kivy")}
        ui_cmd = [sys.executable, "-m", "ui", "--display", "offscreen", "--config", str(work / "none.toml")]
        ui = _start_idle(ui_cmd, ui_env, work, idle_s)
        results["idle_cpu_percent"] = ui["cpu_percent"]
        results["ui_rss_mb"] = ui["rss_mb"]
        results["start_to_interactive_s"] = ui["start_s"]
        short = max(10.0, idle_s / 3)
        full = _start_idle(ui_cmd, {**ui_env, "HCP_UI_IDLE_FPS": "0", "HCP_DEVICE_DATA_DIR": str(work / "idle2")},
                           work, short)
        results["baseline_idle_cpu_percent_no_fps_drop"] = full["cpu_percent"]
        bare = _start_idle([sys.executable, "-m", "bench.ui", "--bare"], {**base_env, "KIVY_HOME": str(work / "k2")},
                           work, short)
        results["baseline_bare_kivy_idle_cpu_percent"] = bare["cpu_percent"]
        results["baseline_bare_kivy_start_s"] = bare["start_s"]
        results["baseline_bare_kivy_rss_mb"] = bare["rss_mb"]
    shutil.rmtree(work, ignore_errors=True)
    return results


if __name__ == "__main__":
    if sys.argv[1:2] == ["--probe"]:
        probe(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1:2] == ["--bare"]:
        bare_app()
    else:
        for key, value in run().items():
            print(f"{key:<44}{value:>10.3f}")
