"""Every keypad file compiles with mpy-cross (no syntax a board cannot load); the figures of the README."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.keypad.mpy import FW, run

BOARD_FILES = sorted(p for p in FW.glob("*.py") if p.name != "twin.py")  # twin.py is the host's


def mpy_cross(src: Path, out: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("mpy-cross")
    return subprocess.run([str(exe), "-o", str(out), str(src)], capture_output=True, text=True)


def test_every_file_compiles_for_a_board_and_the_code_is_small(tmp_path):
    sizes = {}
    for src in sorted(FW.glob("*.py")):
        out = tmp_path / (src.stem + ".mpy")
        p = mpy_cross(src, out)
        assert p.returncode == 0, f"{src.name}: {p.stderr}"
        assert out.read_bytes()[:2] == b"M\x06", "MicroPython .mpy format 6 (1.20 and later)"
        sizes[src.name] = out.stat().st_size
    total = sum(sizes[p.name] for p in BOARD_FILES)
    print(f"\nkeypad .mpy bytes: {json.dumps(sizes)}; on the board: {total}")
    assert total < 64_000, "small beside a Pico W's or an ESP32's flash (2-4 MiB), and loaded one module at a time"


def test_mpy_cross_refuses_what_a_board_cannot_load(tmp_path):
    """The check can fail: CPython-only syntax is refused."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f[T](x: T) -> T:\n    return x\n")
    assert mpy_cross(bad, tmp_path / "bad.mpy").returncode != 0


def test_ram_high_water_of_a_working_day_under_micropython(tmp_path):
    """A scenario on the real MicroPython heap: 200 ratings with cases, bad ratings with reasons, receipts,
    sectors reused. Figures: the heap the keypad's modules take once imported (as .py), and the high-water of
    its live state (live heap after a collection between steps; the flash twin's own bytes excluded)."""
    out = run(r"""
import gc, json
gc.collect()
start = gc.mem_alloc()
#@segment
import clock
clock.VALID_AFTER = 0
import app as appmod
from app import App
from ring import Ring
from twin import NorFlash, Pin
from hw import Leds
flash = NorFlash(16)
#@segment
gc.collect()
base = gc.mem_alloc()
modules = base - start - 16 * 4096
cfg = {"device": "kp-1", "center": "C1", "window": "W01", "utc_offset_min": 480, "reason_keys": ["501", "502"],
       "rating": {"staff_rating_when_idle": True}, "mqtt": {"host": "x"},
       "outbox": {"receipt_timeout_s": 30, "retry_max_s": 600, "alarm_after_offers": 10, "window": 20}}
app = App(cfg, Ring(flash), Leds(Pin, [1, 2, 3, 4, 5]), None)
appmod.log = lambda *a: None
peak = 0
now = 0.0
i = 0
case = '{"v":1,"type":"case","center":"C1","window":"W01","state":"open","case":{"id":"SH2026%06d","item_code":"310115-001","item_name":"居住证办理"},"staff":{"id":"S0101","name":"王芳"},"applicant":{"token":"ap_0123456789abcdef","display":"张*"},"opened_at":"%s"}'
app._inbound(app.topics.catalog, b'{"v":1,"type":"catalog","center":"C1","version":"2026.1","reasons":[{"code":"501","zh":"态度"},{"code":"502","zh":"效率"}]}', now)
#@segment
#@repeat 200
now += 30
app._inbound(app.topics.case, (case % (i, clock.stamp())).encode(), now)
app.key(i % 5, now)
if i % 5 >= 3:
    app.key(0, now)
    app.key(4, now)
now += 10
app.tick(now)
if i % 3 == 2 and i < 100:  # receipts for the morning; the afternoon the link is down
    for r in app.ring.ids()[:3]:
        app.ring.delete(r)
i += 1
#@then
gc.collect()
peak = max(peak, gc.mem_alloc() - base)
#@segment
print("@" + json.dumps([modules, peak, len(app.ring), app.ring.next_seq - 1, app.ring.erases]))
""", tmp_path)
    modules, peak, held, records, erases = out[0]
    print(f"\nkeypad RAM under MicroPython: modules {modules} bytes; live state high-water {peak} bytes; "
          f"records {records}, held {held}, sector erases {erases}")
    assert records == 200 and erases >= 2 and held > 90
    assert peak < 48 * 1024, "fits beside the network stack on an ESP32 without PSRAM"
