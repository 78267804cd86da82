"""`attach(terminal)`: start the drivers of the configured hardware profile around a terminal.

The drivers are a view: they see the core only through its port (`device.port`): the published
`Snapshot`, `submit()`, `watch()` and the hardware alarms (`raise_alarm`, `clear_alarm`).

Threads and hand-offs (no driver logic ever runs on the UI thread, and the core thread only stores):

- GPIO thread: key edge → `KeyFilter` → neutral ack (flash + beep, started on gpiozero's threads)
  → `KeyRouter` → ``terminal.submit(event)``;
- core thread: ``terminal.watch`` → router / backlight keeper / small screen remember the snapshot;
- ``drivers-tick`` thread (4 Hz): status LED, backlight dimming and opening hours, stuck-key alarm;
- ``small-screen`` thread draws frames; ``printer`` thread prints.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Iterator

from device.machine import Phase
from device.port import Snapshot, TerminalPort
from drivers.backlight import BacklightKeeper
from drivers.display import ScreenWorker, SmallScreen
from drivers.feedback import terminal_status
from drivers.hours import HoursError, OpeningHours
from drivers.keys import KeyRouter, ReasonCursor
from drivers.printer import PrintResult, slip_from_state
from drivers.profile import Profile
from drivers.rig import Rig

log = logging.getLogger(__name__)
PRINTER_ALARMS = ("printer_paper_out", "printer_cover_open", "printer_offline", "printer_error", "printer_paper_low")


class Attachment:
    """The drivers attached to one terminal; `close()` detaches them. Hooks for the UI:

    - `print_slip()`: print the rate-later slip for the case on screen (non-blocking);
    - `on_print(fn)`: ``fn(PrintResult)`` after every print attempt, on the printer thread; when
      ``result.ok`` is false show ``result.message`` ("…请直接扫描屏幕上的二维码评价");
    - `activity()`: call on every touch (wakes the backlight); `ack()`: the neutral key feedback;
    - `rig`: the drivers themselves, for `drivers.selftest.run(attachment, …)`.
    """

    def __init__(self, terminal: TerminalPort, rig: Rig, *, opening_hours: OpeningHours = OpeningHours(),
                 dim_after_s: float = 120, backlog_records: int = 20, center_name: str = "",
                 clock: Callable[[], float] = time.monotonic, local_now: Callable[[], datetime] = datetime.now,
                 tick_s: float = 0.25):
        self.terminal = terminal
        self.rig = rig
        p = rig.profile
        self.profile: Profile = p
        snap = terminal.snapshot
        self.center_name = center_name or snap.center
        self.backlog_records = backlog_records
        self.tick_s = tick_s
        self._snap: Snapshot = snap
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._stuck = False
        self._paused = threading.Event()
        self._listeners: list[Callable[[PrintResult], None]] = []
        self.cursor = ReasonCursor()
        self.router = KeyRouter(terminal.submit, p.flow, self.cursor,
                                extras={"print_slip": self._print_key, "call_staff": rig.feedback.bell})
        self.keeper: BacklightKeeper | None = None
        if rig.backlight is not None:
            b = p.backlight
            self.keeper = BacklightKeeper(rig.backlight, bright=b.bright_percent, dim=b.dim_percent,
                                          dim_after_s=dim_after_s, hours=opening_hours, clock=clock,
                                          local_now=local_now,
                                          on_error=lambda d: terminal.raise_alarm("backlight_failed", d))
        self.screen: ScreenWorker | None = None
        if rig.display is not None:
            self.screen = ScreenWorker(rig.display, SmallScreen(rig.display.size, snap.window),
                                       online=lambda: self._snap.online, cursor=self.cursor.get)
            self.cursor.on_change(self.screen.refresh)
        if rig.printer is not None:
            rig.printer.on_problem = self._printer_problem
            rig.printer.on_ok = self._printer_ok
            rig.printer.on_result(self._print_result)
        if rig.keys is not None:
            rig.keys.on_press = self._key
            rig.keys.on_reject = lambda key, reason: self.activity()
        for part, detail in rig.problems.items():
            terminal.raise_alarm(f"hardware_{part}", detail)
        terminal.watch(self._on_snapshot)
        self._ticker = threading.Thread(target=self._tick_loop, name="drivers-tick", daemon=True)
        self._ticker.start()

    # ---- hooks ---------------------------------------------------------------------------------

    def print_slip(self, on_done: Callable[[PrintResult], None] | None = None) -> PrintResult | None:
        """Print the slip for the case on screen; None when queued, else why not (also sent to on_print)."""
        with self._lock:
            s = self._snap.state
        if self.rig.printer is None:
            result = PrintResult(False, "slip", reason="offline", detail="no printer",
                                 message="本机未接打印机，请扫描屏幕上的二维码评价")
            self._print_result(result)
            return result
        return self.rig.printer.print_slip(slip_from_state(s, self.center_name), on_done)

    def print_test_page(self, on_done: Callable[[PrintResult], None] | None = None) -> PrintResult | None:
        """The maintenance screen's "print test page" (non-blocking; result to on_done and on_print)."""
        if self.rig.printer is None:
            return PrintResult(False, "test", reason="offline", detail="no printer in this profile")
        return self.rig.printer.print_test_page(self.profile.name, on_done)

    def on_print(self, fn: Callable[[PrintResult], None]) -> None:
        self._listeners.append(fn)

    def activity(self) -> None:
        """A touch (or any sign of a person): wake the backlight."""
        if self.keeper is not None:
            self.keeper.activity()

    def ack(self) -> None:
        """Neutral feedback (same flash and beep as every key)."""
        self.rig.feedback.ack()

    @contextmanager
    def paused(self) -> Iterator[None]:
        """While inside (the self-test), the ticker leaves the status LED, backlight and screen alone."""
        self._paused.set()
        if self.screen is not None:
            self.screen.paused = True
        try:
            yield
        finally:
            self._paused.clear()
            if self.screen is not None:
                self.screen.paused = False
                self.screen.refresh()
            if self.rig.status is not None:
                self.rig.status.status = None  # show the real status again on the next tick
            if self.keeper is not None:
                self.keeper.mode = ""

    def close(self) -> None:
        self._stop.set()
        self._ticker.join(timeout=5)
        if self.screen is not None:
            self.screen.close()
            self.rig.display = None
        self.rig.close()

    # ---- wiring --------------------------------------------------------------------------------

    def _key(self, key: str) -> None:
        """An accepted press (GPIO thread): the event first, then the (neutral) feedback and the wake."""
        with self._lock:
            s = self._snap.state
        if self.keeper is not None and self.keeper.is_dark and s.phase == Phase.IDLE:
            log.info("key %s woke the screen (not taken as a rating)", key)
            self.rig.feedback.ack()
            self.keeper.activity()
            return
        self.router.press(key)
        self.rig.feedback.ack()
        self.activity()

    def _print_key(self) -> None:
        self.print_slip()

    def _on_snapshot(self, snap: Snapshot) -> None:
        if self._stop.is_set():
            return  # detached (the terminal keeps its watchers)
        s = snap.state
        with self._lock:
            self._snap = snap
        self.router.state(s)
        if self.keeper is not None:
            self.keeper.on_state(s)
        if self.screen is not None:
            self.screen.screen.window_fallback = snap.window  # (the window served now: a move changes it)
            self.screen.state(s)

    def _print_result(self, result: PrintResult) -> None:
        if self.screen is not None and result.message:
            self.screen.notice(result.message)
        for fn in self._listeners:
            try:
                fn(result)
            except Exception:  # noqa: BLE001
                log.exception("print listener failed")

    def _printer_problem(self, reason: str, detail: str) -> None:
        self.terminal.raise_alarm(f"printer_{reason}", detail)

    def _printer_ok(self) -> None:
        for code in PRINTER_ALARMS:
            self.terminal.clear_alarm(code)

    def _tick_loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - the ticker must survive a bad driver
                log.exception("drivers tick failed")

    def tick(self) -> None:
        """Status LED, backlight policy and the stuck-key alarm (the ticker thread calls this)."""
        t = self.terminal
        if self._paused.is_set():
            return
        if self.rig.status is not None:
            with self._lock:
                s = self._snap
            self.rig.status.show(terminal_status(s.online, s.pending, s.quarantined, s.alarms, self.backlog_records))
        if self.keeper is not None:
            self.keeper.tick()
        if self.rig.keys is not None and self.profile.keys is not None:
            stuck = {k: d for k, d in self.rig.keys.held().items() if d >= self.profile.keys.stuck_s}
            if stuck and not self._stuck:
                t.raise_alarm("key_stuck", ", ".join(f"{k} down {d:.0f} s" for k, d in stuck.items()))
            elif not stuck and self._stuck:
                t.clear_alarm("key_stuck")
            self._stuck = bool(stuck)


def check(hw: Any) -> None:
    """Validate a ``[hardware]`` config section: the profile loads and the opening hours parse.
    Raises ProfileError / HoursError naming the key (for ``--check-config``)."""
    from drivers.profile import load_profile

    if hw.profile:
        load_profile(hw.profile)
    try:
        OpeningHours.parse(hw.opening_hours)
    except HoursError as e:
        raise HoursError(f"hardware.opening_hours: {e}") from None


def attach(terminal: TerminalPort, profile: Profile | str | None = None, *, simulate: bool | None = None,
           pin_factory: Any = None, sysfs_root: str | None = None, rig: Rig | None = None,
           clock: Callable[[], float] = time.monotonic, local_now: Callable[[], datetime] = datetime.now,
           key_clock: Callable[[], float] = time.monotonic, printer_factory: Callable[[], Any] | None = None,
           tick_s: float = 0.25) -> Attachment | None:
    """Attach the drivers of `profile` (default: the snapshot's ``hardware.profile``) to `terminal`.

    Returns None when no profile is configured. Raises ProfileError / HoursError for a wrong profile
    or opening hours (both name the key); a part that cannot be opened is raised as a
    ``hardware_<part>`` alarm instead, and the rest runs.
    """
    hw = terminal.snapshot.hardware
    profile = profile if profile is not None else hw.profile
    if not profile and rig is None:
        return None
    try:
        hours = OpeningHours.parse(hw.opening_hours)
    except HoursError as e:
        raise HoursError(f"hardware.opening_hours: {e}") from None
    if rig is None:
        rig = Rig(profile, simulate=hw.simulate if simulate is None else simulate, pin_factory=pin_factory,
                  sysfs_root=sysfs_root or hw.sysfs_root, key_clock=key_clock, printer_factory=printer_factory)
    return Attachment(terminal, rig, opening_hours=hours, dim_after_s=hw.dim_after_s,
                      backlog_records=hw.backlog_records, center_name=hw.center_name, clock=clock,
                      local_now=local_now, tick_s=tick_s)
