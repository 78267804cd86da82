"""The kiosk: binds one terminal's port (`device.port`) to the screens.

- The core calls `watch` callbacks on its own thread with a `Snapshot`: the newest one is handed to the
  Kivy thread with `Clock.schedule_once` and rendered there (widgets are never touched from the core
  thread). Everything a render uses (state, window, its name, the hall and staff QR settings, counts,
  connectivity, pairing) comes from that one snapshot: never from the core's insides, never a lock.
- Buttons submit events (`terminal.submit`); the core decides, the kiosk shows the result.
- A rendering failure never leaves a dead screen: the screens are rebuilt, then the idle screen,
  then a fallback that cannot fail is shown, and rendering is retried (committed ratings are safe
  in the core's outbox anyway).
- Nothing redraws while nothing changes: the clock label changes once a minute, and after a while
  without activity the frame rate cap drops (`ui.idle_fps`).
- Kivy runs with the `free_only` clock: a state from the core arrives as a "free" clock event, which
  runs at once even while the loop sleeps; the kiosk then ends that frame's sleep so the new screen
  is drawn immediately (`wake_clock`), whatever the frame rate cap is.
"""
from __future__ import annotations

import hmac
import logging
import threading
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Callable

from kivy.clock import Clock
from kivy.config import Config
from kivy.core.window import Window
from kivy.uix.floatlayout import FloatLayout

from device import qr as qrmod
from device.machine import Phase, State
from device.port import Snapshot, TerminalPort
from ui import netinfo, present
from ui.audio import Silent, Voice
from ui.hooks import ACTIONS, MaintenanceHooks
from ui.i18n import DASH, Translator
from ui.photos import PhotoCache
from ui.present import GESTURE_SCREENS, PairingInfo, Screen, Status
from ui.screens import PROMPTS, SCREENS, FallbackScreen
from ui.theme import Geometry

log = logging.getLogger(__name__)
SUBMIT_WAIT_S = 0.03  # after a touch, how long the UI thread waits for the core's answer before drawing


def wake_clock() -> None:
    """End the current frame's sleep so the next frame is drawn now (Kivy's free_only clock sleeps until
    `_last_tick + 1/maxfps`; moving `_last_tick` back ends that wait; the frame's dt reads long once)."""
    try:
        Clock._last_tick = Clock.time() - 1.0
    except AttributeError:  # another clock implementation: it simply draws at its next frame
        pass


_schedule_now = getattr(Clock, "schedule_once_free", Clock.schedule_once)


@lru_cache(maxsize=32)
def static_matrix(url: str) -> tuple[tuple[bool, ...], ...]:
    """QR modules for a URL that does not change (hall, staff, pairing), computed once."""
    return tuple(map(tuple, qrmod.matrix(url)))


class Stage(FloatLayout):
    """Holds the screen that is up; switching is a swap of one child (no transition, no animation)."""

    def show(self, screen) -> None:
        if screen.parent is self:
            return
        self.clear_widgets()
        screen.size_hint = (1, 1)
        self.add_widget(screen)


class Maintenance:
    """The hidden gesture, the PIN and the maintenance panel: local to the UI, unknown to the core.

    Gesture: five taps within four seconds in the top-left corner of any screen (`GESTURE_SCREENS`).
    Actions that cannot be undone (`CONFIRM`) run on a second press; anything else cancels that.
    """

    TAPS = 5
    TAP_WINDOW_S = 4.0
    MAX_TRIES = 5
    LOCK_S = 60.0
    PIN_MAX = 12
    CONFIRM = {"re_enrol": "maint.confirm_re_enrol"}

    def __init__(self, kiosk: "Kiosk", pin: str, timeout_s: float, clock: Callable[[], float] = time.monotonic):
        self.k = kiosk
        self.pin = pin
        self.timeout_s = timeout_s
        self.clock = clock
        self.screen: Screen | None = None
        self.entered = ""
        self.message = ""
        self.result = ""
        self.failures = 0
        self.confirming: str | None = None
        self.locked_until = 0.0
        self._taps: list[float] = []
        self._timer = None

    @property
    def enabled(self) -> bool:
        return bool(self.pin)

    def corner_tap(self) -> None:
        now = self.clock()
        self._taps = [t for t in self._taps if now - t <= self.TAP_WINDOW_S] + [now]
        if len(self._taps) >= self.TAPS and self.enabled:
            self._taps = []
            self.open(Screen.PIN)

    def open(self, screen: Screen) -> None:
        self.screen = screen
        if screen == Screen.PIN:
            self.entered, self.message = "", ("maint.locked" if self.locked() else "")
        self.touched()
        self.k.render()

    def touched(self) -> None:
        """Any touch while open keeps it open; `timeout_s` untouched closes it."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = Clock.schedule_once(lambda dt: self.cancel(), self.timeout_s)

    def locked(self) -> bool:
        return self.clock() < self.locked_until

    def digit(self, d: str) -> None:
        if not self.locked() and len(self.entered) < self.PIN_MAX:
            self.entered += d
            self.message = ""
        self.k.render()

    def delete(self) -> None:
        self.entered = self.entered[:-1]
        self.k.render()

    def ok(self) -> None:
        if self.locked():
            self.message = "maint.locked"
        elif self.enabled and hmac.compare_digest(self.entered.encode(), self.pin.encode()):
            self.failures, self.entered, self.message, self.result = 0, "", "", ""
            log.warning("maintenance screen opened")
            self.screen = Screen.MAINTENANCE
        else:
            self.failures += 1
            self.entered = ""
            self.message = "maint.pin_wrong"
            log.warning("wrong maintenance PIN (%d)", self.failures)
            if self.failures >= self.MAX_TRIES:
                self.failures = 0
                self.locked_until = self.clock() + self.LOCK_S
                self.message = "maint.locked"
        self.k.render()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.screen, self.entered, self.message, self.confirming = None, "", "", None
        self.k.render()

    def run(self, action: str) -> None:
        t = self.k.t
        if action in self.CONFIRM and self.confirming != action:
            self.confirming, self.result = action, t(self.CONFIRM[action])
            return self.k.render()
        self.confirming = None
        ok, msg = self.k.hooks.run(action)
        name = t(ACTIONS[action])
        self.result = t("maint.hook_done" if ok else "maint.hook_failed", name=name) + (f"{DASH}{msg}" if msg else "")
        self.k.render()

    def action_state(self, action: str) -> tuple[bool, str]:
        """(enabled, label) of an action's button."""
        k, t = self.k, self.k.t
        label = t(ACTIONS[action])
        if action == "re_enrol" and not k.hooks.available(action) and k.snap.mode == "plain":
            return False, label + "\n" + t("maint.manual")
        if self.confirming == action:
            return True, t("maint.confirm", name=label)
        if action == "requeue":
            return k.hooks.available(action) and k.status.quarantined > 0, label
        return k.hooks.available(action), label

    def toggle_language(self) -> None:
        self.k.set_language("en" if self.k.t.language == "zh" else "zh")

    def rows(self) -> list[tuple[str, str]]:
        k = self.k
        host, port = k.snap.broker
        return present.maintenance_rows(k.t, device_id=k.device_id, window=k.window_id, host=host, port=port,
                                        status=k.status, network=k.network(), ui_errors=k.errors,
                                        problem=k.status.problem, firmware=k.snap.firmware)


class Kiosk:
    """One terminal on one window: state in, screens out, touches back in as events."""

    def __init__(self, terminal: TerminalPort, *, pairing: PairingInfo | None = None,
                 hooks: MaintenanceHooks | None = None,
                 voice: Voice | None = None, photo_dir: str | Path | None = None,
                 network: Callable[[], list[str]] = netinfo.summary,
                 clock: Callable[[], float] = time.monotonic):
        self.terminal = terminal
        self.clock = clock  # for the double-tap guard
        self.device_id = terminal.device_id
        self.snap: Snapshot = terminal.snapshot  # what is rendered: state and everything beside it, one moment
        self.pairing = pairing  # shown instead of the core's pairing while set (demos, screenshots)
        self.hooks = hooks or MaintenanceHooks()
        self._core_hooks()
        self.voice: Voice = voice or Silent()
        self.network = network
        self.t = Translator(self.ui.language)
        self.maintenance = Maintenance(self, self.ui.maintenance_pin, self.ui.maintenance_timeout_s)
        photo_dir = photo_dir or Path(self.snap.data_dir) / "photos"
        self.photos = PhotoCache(photo_dir, on_ready=lambda url: self.refresh(), ca_file=self.snap.ca_file)
        self.stage = Stage()
        self.screens: dict[Screen, object] = {}
        self.state: State = self.snap.state
        self.status: Status = Status.of(self.snap)
        self.shown: Screen | None = None
        self.shown_widget = None
        self.rendered_state: State | None = None
        self.errors = 0
        self.geo = self._geometry()
        self.active_fps = float(Config.getint("graphics", "maxfps")) or 60.0
        self.screen_since = 0.0
        self._lock = threading.Lock()
        self._pending: Snapshot | None = None
        self._scheduled = False
        self._answered = threading.Event()
        self._events: list = []
        self._idle_event = None
        self._attached = False
        self._listeners: list[Callable[["Kiosk"], None]] = []

    def _core_hooks(self) -> None:
        """The maintenance actions the core itself offers (unless the caller registered its own)."""
        if not self.hooks.available("requeue"):
            self.hooks.register("requeue", self._requeue)
        if not self.hooks.available("re_enrol") and self.snap.mode != "plain":
            self.hooks.register("re_enrol", self._re_enrol)

    def _requeue(self) -> str:
        """Offer the quarantined records again (after the center fixed the cause: protocol §7)."""
        return self.t("maint.requeued", n=self.terminal.requeue())

    def _re_enrol(self) -> str:
        self.terminal.re_enrol()
        return self.t("maint.re_enrolling")

    # ---- what the core serves now, as of the snapshot rendered (a pairing or a move changes it) ------

    @property
    def ui(self):
        """The `[ui]` settings in force (a binding brings the hall QR and the staff QR template)."""
        return self.snap.ui

    @property
    def window_id(self) -> str:
        return self.snap.window

    @property
    def window_name(self) -> str:
        """The window's name from the binding ("" for a terminal configured by hand)."""
        return self.snap.window_name

    @property
    def shown_pairing(self) -> PairingInfo | None:
        """The pairing set on the kiosk, else the core's."""
        return self.pairing if self.pairing is not None else PairingInfo.of(self.snap.pairing)

    # ---- wiring ---------------------------------------------------------------------------------

    def attach(self) -> "Kiosk":
        """Start watching the terminal and the window (Kivy thread)."""
        self._attached = True
        Window.bind(on_touch_down=self._on_touch, size=self._on_resize)
        self._schedule_minute()
        self.terminal.watch(self._from_core)
        self.render()
        return self

    def detach(self) -> None:
        self._attached = False
        Window.unbind(on_touch_down=self._on_touch, size=self._on_resize)
        for ev in self._events:
            ev.cancel()
        self._events = []
        if self._idle_event is not None:
            self._idle_event.cancel()
        if self.maintenance._timer is not None:
            self.maintenance._timer.cancel()
        Clock._max_fps = self.active_fps
        self.voice.stop()

    def on_rendered(self, fn: Callable[["Kiosk"], None]) -> None:
        """`fn(kiosk)` after every render (benchmarks and tests watch frames with it)."""
        self._listeners.append(fn)

    def submit(self, event) -> None:
        """Hand a citizen's input to the core, then render its answer in this same frame.

        The core answers within a few milliseconds (a rating is committed before the answer): waiting
        briefly here saves drawing an intermediate frame (the released button) before the next screen.
        """
        self._answered.clear()
        self.terminal.submit(event)
        if self._answered.wait(SUBMIT_WAIT_S):
            self._take_pending()

    def set_pairing(self, pairing: PairingInfo | None) -> None:
        """Show (or leave) the unpaired screen; safe from any thread."""
        self.pairing = pairing
        self.refresh()

    def refresh(self) -> None:
        """Re-render from any thread (e.g. a staff photo arrived)."""
        self._from_core(self.terminal.snapshot)

    # ---- core → UI -------------------------------------------------------------------------------

    def _from_core(self, snap: Snapshot) -> None:
        """Core thread: keep only the newest snapshot; one render per frame at most."""
        with self._lock:
            self._pending = snap
            self._answered.set()
            if self._scheduled:
                return
            self._scheduled = True
        _schedule_now(self._take_pending, 0)

    def _take_pending(self, dt: float | None = None) -> None:
        with self._lock:
            snap, self._pending = self._pending, None
            if dt is not None:
                self._scheduled = False
        if snap is None or not self._attached:
            return
        self.snap, self.state, self.status = snap, snap.state, Status.of(snap)
        self.render()
        if dt is not None:
            wake_clock()

    # ---- rendering ---------------------------------------------------------------------------------

    def _geometry(self) -> Geometry:
        return Geometry.for_window(Window.width, Window.height, self.ui.panel_dpi, self.ui.panel_diagonal_in)

    def relayout(self) -> None:
        """Rebuild every screen for the current window size (rotation, resize, language)."""
        self.geo = self._geometry()
        self.screens.clear()
        self.stage.clear_widgets()
        self.shown = None
        self.render()

    def _on_resize(self, *_) -> None:
        if (Window.width, Window.height) != (self.geo.width, self.geo.height):
            self.relayout()

    def set_language(self, language: str) -> None:
        self.t = Translator(language)
        self.relayout()

    def screen(self, name: Screen):
        s = self.screens.get(name)
        if s is None:
            s = self.screens[name] = SCREENS[name](self)
        return s

    def render(self) -> None:
        """Show `self.state`; on any failure, recover instead of leaving a dead screen."""
        try:
            self._render(self.state)
        except Exception as e:  # noqa: BLE001 - the kiosk must keep a live screen
            self.recover(e)

    def _render(self, state: State) -> None:
        name = present.screen_for(state, self.shown_pairing, self.maintenance.screen, self.shown)
        widget = self.screen(name)
        entering = name != self.shown
        if entering:
            widget.on_enter()
        widget.update(state)
        if entering:
            self.stage.show(widget)
            self.screen_since = self.clock()
            self.shown, self.shown_widget = name, widget
            self._activity()
            prompt = PROMPTS.get(name)
            if prompt:
                self.voice.say(prompt)
        self.rendered_state = state
        for fn in self._listeners:
            fn(self)

    def recover(self, error: BaseException) -> None:
        """Rebuild the screens and show the state again; else idle; else the fallback page."""
        self.errors += 1
        log.error("UI error #%d, rebuilding the screens", self.errors, exc_info=error)
        self.screens.clear()
        self.stage.clear_widgets()
        self.shown = None
        for state in (self.state, replace(self.state, phase=Phase.IDLE)):
            try:
                self._render(state)
                return
            except Exception:  # noqa: BLE001
                log.exception("UI recovery render failed")
                self.screens.clear()
                self.stage.clear_widgets()
                self.shown = None
        fallback = FallbackScreen(self)
        self.stage.show(fallback)
        self.shown, self.shown_widget = Screen.FALLBACK, fallback
        self._events.append(Clock.schedule_once(lambda dt: self.render(), 5))

    def clock_text(self) -> str:
        return time.strftime("%H:%M")

    def _schedule_minute(self) -> None:
        delay = 60.5 - time.time() % 60
        self._events.append(Clock.schedule_once(self._minute, delay))

    def _minute(self, *_) -> None:
        bar = getattr(self.shown_widget, "bar", None)
        if bar is not None:
            bar.clock.text = self.clock_text()
        if self._attached:
            self._schedule_minute()

    # ---- QR and photos ------------------------------------------------------------------------------

    def static_qr(self, url: str):
        return static_matrix(url) if url else None

    def photo(self, url: str) -> str | None:
        p = self.photos.get(url) if url else None
        return str(p) if p else None

    # ---- touches ----------------------------------------------------------------------------------

    def _on_touch(self, window, touch) -> bool | None:
        """Window-level look at every touch: activity, the double-tap guard, the hidden gesture."""
        self._activity()
        if self.maintenance.screen is not None:
            self.maintenance.touched()
        guard = self.ui.touch_guard_ms / 1000
        if guard and self.clock() - self.screen_since < guard:
            return True  # swallowed: the finger was still on the previous screen
        if self.shown in GESTURE_SCREENS and self._in_corner(touch):
            self.maintenance.corner_tap()
        return None

    def _in_corner(self, touch) -> bool:
        g = self.geo
        return touch.x <= g.px(20) and touch.y >= Window.height - g.bar_height

    # ---- CPU when idle ----------------------------------------------------------------------------

    def _activity(self) -> None:
        """Full frame rate now; `ui.idle_fps` after `ui.idle_after_s` of nothing on an idle screen."""
        Clock._max_fps = self.active_fps
        if not self.ui.idle_fps:
            return
        if self._idle_event is not None:
            self._idle_event.cancel()
        self._idle_event = Clock.schedule_once(self._go_quiet, self.ui.idle_after_s)

    def _go_quiet(self, *_) -> None:
        if self.shown in (Screen.IDLE, Screen.UNPAIRED) and self._attached:
            Clock._max_fps = float(self.ui.idle_fps)
