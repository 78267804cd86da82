"""The Kivy application around the kiosk: systemd readiness and watchdog, and the exception guard.

- READY=1 goes to systemd after the first frame of an interactive screen has been drawn;
- WATCHDOG=1 is sent from the UI clock every WatchdogSec/2 while the core thread is alive, so a
  hung UI loop (or a dead core) gets the service restarted;
- an exception anywhere in the Kivy loop is logged, the screens are rebuilt and the loop goes on;
  a storm of them (a broken GPU, say) ends the process instead, and systemd starts it again.
"""
from __future__ import annotations

import logging
import time

from kivy.app import App
from kivy.base import ExceptionHandler, ExceptionManager
from kivy.clock import Clock
from kivy.core.window import Window

from device.port import TerminalPort
from ui import sdnotify
from ui.audio import Voice
from ui.hooks import MaintenanceHooks
from ui.kiosk import Kiosk
from ui.present import PairingInfo

log = logging.getLogger(__name__)


class UiGuard(ExceptionHandler):
    """Keeps the loop alive through a UI exception: log it, rebuild the screens, carry on."""

    def __init__(self, kiosk: Kiosk, limit: int = 20, per_s: float = 60.0):
        self.kiosk = kiosk
        self.limit = limit
        self.per_s = per_s
        self.recent: list[float] = []

    def handle_exception(self, exception):
        if isinstance(exception, (KeyboardInterrupt, SystemExit)):
            return ExceptionManager.RAISE
        now = time.monotonic()
        self.recent = [t for t in self.recent if now - t < self.per_s] + [now]
        if len(self.recent) > self.limit:
            log.critical("%d UI exceptions in %.0f s: exiting so that systemd restarts the kiosk",
                         len(self.recent), self.per_s, exc_info=exception)
            return ExceptionManager.RAISE
        Clock.schedule_once(lambda dt: self.kiosk.recover(exception), 0)
        return ExceptionManager.PASS


class KioskApp(App):
    """`KioskApp(terminal).run()` on the core's port (`device.port.TerminalPort`), started or not."""

    def __init__(self, terminal: TerminalPort, *, pairing: PairingInfo | None = None,
                 hooks: MaintenanceHooks | None = None, voice: Voice | None = None, started_at: float | None = None,
                 **kw):
        super().__init__(**kw)
        self.terminal = terminal
        self.kiosk = Kiosk(terminal, pairing=pairing, hooks=hooks, voice=voice)
        self.title = self.kiosk.t("app.title")
        self.started_at = time.monotonic() if started_at is None else started_at
        self.interactive_after: float | None = None
        self.guard = UiGuard(self.kiosk)

    def build(self):
        return self.kiosk.stage

    def on_start(self) -> None:
        ExceptionManager.add_handler(self.guard)
        self.kiosk.attach()
        Window.bind(on_flip=self._first_frame)
        interval = sdnotify.watchdog_interval()
        if interval:
            Clock.schedule_interval(self._watchdog, interval)

    def _first_frame(self, *_) -> None:
        if self.kiosk.shown is None:
            return
        Window.unbind(on_flip=self._first_frame)
        self.interactive_after = time.monotonic() - self.started_at
        log.info("interactive after %.2f s (%s screen)", self.interactive_after, self.kiosk.shown.value)
        sdnotify.notify(f"READY=1\nSTATUS=showing the {self.kiosk.shown.value} screen")

    def _watchdog(self, *_) -> None:
        if not self.terminal.alive:
            log.critical("the core thread has stopped: no more watchdog pings")
            return
        sdnotify.notify("WATCHDOG=1")

    def on_stop(self) -> None:
        sdnotify.notify("STOPPING=1")
        ExceptionManager.remove_handler(self.guard)
        self.kiosk.detach()
