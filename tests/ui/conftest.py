"""UI fixtures: one real Kivy window (SDL offscreen: EGL on Mesa llvmpipe, no X server) shared by the
session, real kiosks on real Terminals talking to the real Mosquitto broker of `tests/conftest.py`,
driven by simulated touches (`kivy.tests.common.UnitTestTouch`).

Kivy reads its environment when imported, and a process gets one window: the environment is set
here, before any test module imports `ui.*`, and every test mounts its kiosk on the same window.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

from tests.screenshots import screens_dir
from ui import env as ui_env

ui_env.prepare_offscreen(800, 480, home=tempfile.mkdtemp(prefix="kivy-home-tests-"))

from kivy.base import EventLoop  # noqa: E402  (after the environment is set)
from kivy.core.window import Window  # noqa: E402
from kivy.tests.common import UnitTestTouch  # noqa: E402
from kivy.uix.label import Label  # noqa: E402

from device.machine import Phase  # noqa: E402
from ui.kiosk import Kiosk  # noqa: E402
from ui.present import Screen  # noqa: E402

EventLoop.ensure_window()
UI_DEFAULTS = {"HCP_UI_TOUCH_GUARD_MS": "0", "HCP_UI_MAINTENANCE_PIN": "2468",
               "HCP_UI_HALL_QR_URL": "https://hcp.example.gov.cn/hall/C1",
               "HCP_UI_STAFF_QR_TEMPLATE": "https://hcp.example.gov.cn/staff/{staff}"}


class Driver:
    """Pumps the Kivy loop on the test thread and touches widgets like a finger would."""

    def __init__(self, kiosk: Kiosk, terminal):
        self.k = kiosk
        self.t = terminal

    # ---- the loop ---------------------------------------------------------------------------------

    def frames(self, n: int = 2) -> None:
        for _ in range(n):
            EventLoop.idle()

    def until(self, pred, timeout: float = 20, what: str = "condition"):
        """Pump frames until `pred()` is truthy (a hang guard, not a speed assertion)."""
        end = time.monotonic() + timeout
        while True:
            EventLoop.idle()
            value = pred()
            if value:
                return value
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what} (screen {self.screen}, "
                                     f"phase {self.t.state.phase.value})")

    def settle(self, frames: int = 3) -> None:
        """Let pending core → UI hand-overs land and the layout settle."""
        self.until(lambda: self.k.rendered_state is self.t.state, what="UI caught up with the core")
        self.frames(frames)

    # ---- looking ----------------------------------------------------------------------------------

    @property
    def screen(self) -> Screen | None:
        return self.k.shown

    @property
    def widget(self):
        return self.k.shown_widget

    def on(self, screen: Screen, phase: Phase | None = None, timeout: float = 20):
        self.until(lambda: self.k.shown == screen and (phase is None or self.t.state.phase == phase)
                   and self.k.rendered_state is self.t.state, timeout, f"{screen.value} screen")
        self.frames(2)
        return self.widget

    def labels(self, root=None) -> list[Label]:
        root = root or self.widget
        return [w for w in root.walk() if isinstance(w, Label) and w.opacity > 0 and visible(w)]

    def texts(self) -> str:
        return "\n".join(w.text for w in self.labels() if w.text)

    # ---- touching ---------------------------------------------------------------------------------

    def tap_at(self, x: float, y: float) -> None:
        touch = UnitTestTouch(x, y)
        touch.touch_down()
        touch.touch_up()
        self.frames(1)

    def tap(self, widget) -> None:
        x, y = widget.to_window(*widget.center)
        self.tap_at(x, y)

    def export(self, name: str) -> Path:
        """The screen as a PNG in `tests.screenshots.screens_dir()` (docs/screens only for `make screens`)."""
        path = screens_dir() / f"{name}.png"
        self.frames(2)
        self.widget.export_to_png(str(path))
        return path


def visible(w) -> bool:
    """Shown on screen: neither the widget nor any parent is fully transparent."""
    p = w
    while p is not None and p is not Window:
        if getattr(p, "opacity", 1) == 0:
            return False
        p = p.parent
    return True


@pytest.fixture
def window_size():
    """Each test starts on the 800×480 reference panel; a test may resize."""
    Window.size = (800, 480)
    EventLoop.idle()
    yield Window
    Window.size = (800, 480)


@pytest.fixture
def open_kiosk(make_terminal, window_size):
    """`open_kiosk(name="t1", pairing=None, port=None, **HCP_env)` → a Driver for a kiosk on a started
    Terminal (on the test broker, or the broker at `port`); `open_kiosk.on(terminal)` for a Terminal
    started elsewhere (an enrolled one, say)."""
    opened: list[Kiosk] = []

    def mount(term, pairing=None, hooks=None, voice=None) -> Driver:
        for k in opened:
            _unmount(k)
        kiosk = Kiosk(term, pairing=pairing, hooks=hooks, voice=voice, network=lambda: ["eth0 up 192.0.2.10"])
        Window.add_widget(kiosk.stage)
        kiosk.attach()
        opened.append(kiosk)
        d = Driver(kiosk, term)
        d.frames(2)
        return d

    def open_(name: str = "t1", pairing=None, hooks=None, voice=None, port: int | None = None, **env: str) -> Driver:
        return mount(make_terminal(name, port=port, **{**UI_DEFAULTS, **env}), pairing, hooks, voice)

    open_.on = mount
    yield open_
    for k in opened:
        _unmount(k)


def _unmount(k: Kiosk) -> None:
    if k.stage.parent is not None:
        k.detach()
        Window.remove_widget(k.stage)
