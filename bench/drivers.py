"""Driver benchmarks (bench/run.py imports this module when present).

- key_to_durable_p99_ms: a simulated key's release edge on gpiozero's MockFactory → the rating committed
  to the SQLite outbox (the core's Committed), through KeyFilter, KeyRouter, Terminal.submit and the core
  thread. The terminal is offline (no broker), as after a night's outage; target ≤ 10 ms.
- slip_render_ms: the complete rate-later slip (QR + Chinese text raster, escpos bytes); target ≤ 50 ms.
- small_screen_frame_ms: one 240×240 frame of the small display (draw + RGB565), for reference.
"""
from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from datetime import datetime

from devkit import factories
from devkit.broker import free_port

SAMPLES = 200
WARMUP = 50  # first presses after start-up pay one-time costs (driver threads starting, caches filling)


def key_to_durable(samples: int = SAMPLES) -> list[float]:
    from gpiozero.pins.mock import MockFactory

    from device import config
    from device.machine import CaseOpened, Phase
    from device.terminal import Terminal
    from drivers import attach

    logging.getLogger("paho").setLevel(logging.CRITICAL)  # an offline terminal's stop() complains; expected here
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config.load([], {"HCP_MQTT_PORT": str(free_port()), "HCP_DEVICE_DATA_DIR": tmp,
                               "HCP_CENTER_ID": "C1", "HCP_CENTER_WINDOW": "W01", "HCP_QR_DEMO": "true",
                               "HCP_MQTT_RECONNECT_MIN_S": "30", "HCP_MQTT_RECONNECT_MAX_S": "60"})
        term = Terminal(cfg, "bench")
        term.start()
        factory = MockFactory()
        key_time = [1000.0]
        hw = attach(term, "official-7in-touch", simulate=True, pin_factory=factory, key_clock=lambda: key_time[0])
        pin = factory.pin(hw.profile.keys.pins["satisfied"])
        shown, committed = threading.Event(), threading.Event()
        stamp = [0.0]
        last = [""]

        def watch(snap) -> None:
            s = snap.state
            if s.phase == Phase.CASE:
                shown.set()
            if s.last_rating_id and s.last_rating_id != last[0]:
                last[0] = s.last_rating_id
                stamp[0] = time.perf_counter()
                committed.set()

        term.watch(watch)
        out: list[float] = []
        try:
            for i in range(samples + WARMUP):
                shown.clear()
                committed.clear()
                case = factories.case_model(f"B{i:05d}")
                term.submit(CaseOpened(case, qr=term.dynamic_qr(case)))
                if not shown.wait(10):
                    raise RuntimeError("case not shown")
                pin.drive_low()
                key_time[0] += 0.12
                t0 = time.perf_counter()
                pin.drive_high()  # the release edge decides the press
                if not committed.wait(10):
                    raise RuntimeError("rating not committed")
                key_time[0] += 5.0  # well apart: no burst rule
                if i >= WARMUP:
                    out.append((stamp[0] - t0) * 1000)
        finally:
            hw.close()
            term.stop()
            factory.reset()
    return out


def slip_times(runs: int = 30) -> tuple[float, list[float]]:
    from device.qr import DynamicQr, matrix
    from drivers import fonts
    from drivers.printer import SlipInfo, open_printer, render_slip, send_image
    from drivers.profile import PrinterProfile

    url = "https://hcp.example.gov.cn/r?t=1~demo~C1~SH20261126000001~W01~S0101~bench~1790000000~AbCdEfGh~" \
          "0123456789abcdefABCDEF"
    fonts.font.cache_clear()
    fonts.advance.cache_clear()
    times = []
    for _ in range(runs + 1):
        t0 = time.perf_counter()
        q = DynamicQr(url, tuple(map(tuple, matrix(url))), 1790000000)
        info = SlipInfo(q.url, q.modules, "浦东新区政务服务中心", "一号窗口", "居住证办理", "SH20261126000001",
                        "0101", datetime.now(), datetime.fromtimestamp(q.expires))
        p = open_printer(PrinterProfile(connection="file", devfile="/dev/usb/lp0"), simulate=True)
        send_image(p, render_slip(info, 384), "full")
        assert p.output.endswith(b"\x1dV\x00")
        times.append((time.perf_counter() - t0) * 1000)
    return times[0], times[1:]


def frame_times(runs: int = 30) -> list[float]:
    from device.machine import Phase, State
    from device.model import Case
    from device.qr import DynamicQr, matrix
    from drivers.display import SmallScreen, rgb565

    url = "https://hcp.example.gov.cn/r?t=1~demo~C1~SH0001~W01~S0101~bench~1790000000~AbCdEfGh~0123456789abcdef"
    staff = factories.staff()
    s = State(phase=Phase.CASE, case=Case("SH0001", "x", "居住证办理", staff, "ap", "张*"),
              qr=DynamicQr(url, tuple(map(tuple, matrix(url))), 0), window_name="一号窗口")
    screen = SmallScreen((240, 240))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        rgb565(screen.draw(s))
        times.append((time.perf_counter() - t0) * 1000)
    return times


def run() -> dict[str, float]:
    keys = key_to_durable()
    cold, warm = slip_times()
    frames = frame_times()
    return {
        "key_to_durable_p50_ms": statistics.median(keys),
        "key_to_durable_p99_ms": statistics.quantiles(keys, n=100)[98],
        "slip_render_ms": statistics.median(warm),
        "slip_render_cold_ms": cold,
        "small_screen_frame_ms": statistics.median(frames),
    }


if __name__ == "__main__":
    for k, v in run().items():
        print(f"{k:<26}{v:>10.3f}")
