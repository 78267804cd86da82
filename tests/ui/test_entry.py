"""`python -m ui` as systemd runs it (READY after the first frame, WATCHDOG pings, STOPPING on SIGTERM),
the headless fallback, and the kiosk boot files (unit, Kivy config.ini, environment)."""
from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from devkit.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
KIOSK = ROOT / "image-build" / "kiosk"


def ui_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HCP_", "KCFG_", "NOTIFY_", "WATCHDOG_"))}
    env.update({"HCP_MQTT_PORT": str(port), "HCP_DEVICE_DATA_DIR": str(tmp_path / "data"),
                "HCP_DEVICE_ID": "kiosk-1", "HCP_CENTER_ID": "C1", "HCP_CENTER_WINDOW": "W01",
                "HCP_DEVICE_LOG_LEVEL": "INFO", "KIVY_HOME": str(tmp_path / "kivy"),
                "PYTHONPATH": str(ROOT)}, **extra)
    return env


class Notifications:
    """A NOTIFY_SOCKET like systemd's: collects what the service sends."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))
            except socket.timeout:
                continue
            except OSError:
                return

    def has(self, prefix: str) -> list[float]:
        return [t for t, m in list(self.got) if any(line.startswith(prefix) for line in m.splitlines())]

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


def test_python_m_ui_tells_systemd_ready_pings_the_watchdog_and_stops_cleanly(tmp_path, broker, center):
    center.catalog()
    center.duty()
    notes = Notifications(tmp_path / "notify.sock")
    env = ui_env(tmp_path, broker.port, NOTIFY_SOCKET=notes.path, WATCHDOG_USEC="1000000")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "ui", "--display", "offscreen", "--config",
                             str(tmp_path / "none.toml")], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        env["WATCHDOG_PID"] = str(proc.pid)
        wait_for(lambda: notes.has("READY=1") or proc.poll() is not None, timeout=60, what="READY=1")
        assert proc.poll() is None, proc.stdout.read()
        ready_at = notes.has("READY=1")[0]
        wait_for(lambda: len([t for t in notes.has("WATCHDOG=1") if t > ready_at]) >= 2, timeout=20,
                 what="two watchdog pings")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert notes.has("STOPPING=1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notes.close()
    log = proc.stdout.read()
    assert re.search(r"interactive after \d+\.\d\d s \(idle screen\)", log), log[-3000:]
    assert ready_at - started < 60


def test_watchdog_pings_stop_when_the_core_thread_is_dead(tmp_path, make_terminal, monkeypatch):
    from ui.app import KioskApp
    notes = Notifications(tmp_path / "notify.sock")
    monkeypatch.setenv("NOTIFY_SOCKET", notes.path)
    try:
        dead = make_terminal("dead")
        dead.stop()  # its core thread has ended
        alive = make_terminal("alive")
        KioskApp(dead)._watchdog()
        time.sleep(0.3)
        assert not notes.has("WATCHDOG=1")
        KioskApp(alive)._watchdog()
        wait_for(lambda: notes.has("WATCHDOG=1"), what="ping while the core lives")
    finally:
        notes.close()


def test_headless_mode_runs_the_console_view(tmp_path, broker):
    env = ui_env(tmp_path, broker.port)
    proc = subprocess.run([sys.executable, "-m", "ui", "--headless", "--config", str(tmp_path / "none.toml")],
                          env=env, cwd=ROOT, input="q\n", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "[空闲]" in proc.stdout


def test_bad_rotation_is_refused_before_anything_starts(tmp_path, broker):
    env = ui_env(tmp_path, broker.port, HCP_UI_ROTATION="45")
    proc = subprocess.run([sys.executable, "-m", "ui", "--display", "offscreen"], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "ui.rotation" in proc.stderr


# ---- kiosk boot files -------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    unit = (KIOSK / "rating-terminal-ui.service").read_text()
    # verify wants ExecStart's binary to exist: point it at this Python for the check
    local = tmp_path / "rating-terminal-ui.service"
    local.write_text(unit.replace("/opt/rating-terminal/venv/bin/python", sys.executable)
                     .replace("/usr/lib/rating-terminal/launch", sys.executable))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True)
    assert r.returncode == 0 and not (r.stdout + r.stderr).strip(), r.stdout + r.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(local.read_text().replace("WatchdogSec=", "WatchdogSecs="))
    r = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert "WatchdogSecs" in r.stdout + r.stderr  # the check can fail


def test_the_unit_is_a_notify_service_with_watchdog_and_restart():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(KIOSK / "rating-terminal-ui.service")
    s = unit["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0 and s["Restart"] == "always"
    assert s["ExecStart"] == "/usr/lib/rating-terminal/launch" and s["TTYPath"] == "/dev/tty1"
    assert unit["Unit"]["Conflicts"] == "getty@tty1.service"
    assert s["EnvironmentFile"].endswith("kiosk.env")


def kiosk_env() -> dict[str, str]:
    pairs = {}
    for line in (KIOSK / "kiosk.env").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split("=", 1)
            pairs[key] = value
    return pairs


def test_kiosk_env_is_kmsdrm_without_a_gl_backend():
    e = kiosk_env()
    assert e["SDL_VIDEODRIVER"] == "kmsdrm" and e["KIVY_WINDOW"] == "sdl2"
    assert "KIVY_GL_BACKEND" not in e and e["SDL_TOUCH_MOUSE_EVENTS"] == "0" and e["KIVY_NO_ARGS"] == "1"
    assert not any(k.startswith("HCP_") for k in e), "HCP_* variables are terminal configuration"


def _kivy_config(home: Path) -> str:
    code = ("import json, kivy.config as c; from kivy.config import Config; "
            "print(json.dumps({s: dict(Config.items(s)) for s in Config.sections()}))")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KCFG_")}
    env.update(KIVY_HOME=str(home), KIVY_NO_ARGS="1", KIVY_LOG_MODE="PYTHON", KIVY_NO_FILELOG="1")
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60,
                          check=True).stdout


def test_kiosk_config_ini_is_complete_and_kivy_keeps_it_as_is(tmp_path):
    import json
    defaults = json.loads(_kivy_config(tmp_path / "fresh"))
    home = tmp_path / "kiosk"
    home.mkdir()
    shutil.copy(KIOSK / "config.ini", home / "config.ini")
    loaded = json.loads(_kivy_config(home))
    for section, keys in defaults.items():
        assert set(keys) - {"%(name)s"} <= set(loaded[section]), f"[{section}] lacks keys Kivy has"
    assert (home / "config.ini").read_bytes() == (KIOSK / "config.ini").read_bytes(), "Kivy rewrote it"
    k, g, i = loaded["kivy"], loaded["graphics"], loaded["input"]
    assert (k["exit_on_escape"], k["keyboard_mode"], k["kivy_clock"], k["log_enable"]) == ("0", "system",
                                                                                         "free_only", "0")
    assert (g["fullscreen"], g["show_cursor"], g["borderless"]) == ("auto", "0", "1")
    assert "disable_multitouch" in i["mouse"]
    touch = [v for name, v in i.items() if name != "mouse"]
    assert touch == ["probesysfs,provider=hidinput"], "exactly one touch provider"
