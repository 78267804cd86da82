"""Rating keys: raw edges → whole presses (debounced; chords, held keys and bursts rejected) → machine events.

Three small pieces:

- `KeyFilter` is pure: it takes timestamped edges from any number of keys and decides each press at its
  release edge. Contact bounce is absorbed (edges closer than ``debounce`` to the previous edge, a release
  sooner than ``debounce`` after the press, and everything within ``debounce`` after a decided release).
  A press is rejected as ``chord`` when another key was down at any moment of it (both keys are
  rejected), ``held`` when it lasted longer than ``hold_max``, ``burst`` when more than ``burst_max``
  presses ended within ``burst_window``.
- `RatingKeys` owns the gpiozero Buttons and feeds their edges to the filter; accepted presses go to
  ``on_press(key)`` on the GPIO thread (the caller only submits events; no logic runs on the UI thread).
- `KeyRouter` turns an accepted press into a machine event from the latest state: a level key becomes
  ``LevelPressed(level, Channel.KEYS)``; in the reasons screen of a buttons-only box the five keys are
  soft keys (上移 下移 选择 提交 返回, see ``SOFT_KEYS``) over a `ReasonCursor` shown on the small display.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Iterator

from device.machine import Back, LevelPressed, Phase, ReasonsConfirmed, ReasonToggled, State
from protocol.values import Channel, Level

log = logging.getLogger(__name__)

# In the reasons screen of a buttons-only box, each level key is a soft key (labelled on the display).
SOFT_KEYS: dict[str, str] = {
    Level.VERY_SATISFIED.value: "up",
    Level.SATISFIED.value: "down",
    Level.BASICALLY_SATISFIED.value: "toggle",
    Level.DISSATISFIED.value: "confirm",
    Level.VERY_DISSATISFIED.value: "back",
}
SOFT_LABELS: dict[str, str] = {"up": "上移", "down": "下移", "toggle": "选择", "confirm": "提交", "back": "返回"}


@dataclass(frozen=True)
class KeyTiming:
    debounce_s: float = 0.030
    hold_max_s: float = 3.0
    burst_max: int = 4
    burst_window_s: float = 2.0


@dataclass(frozen=True)
class Press:
    """One whole press, decided at its release."""

    key: str
    start: float
    end: float
    accepted: bool
    reason: str = ""  # "" | "chord" | "held" | "burst"

    @property
    def duration(self) -> float:
        return self.end - self.start


class _Key:
    __slots__ = ("down", "last_edge", "press_start", "chorded", "quiet_until")

    def __init__(self) -> None:
        self.down = False
        self.last_edge = float("-inf")
        self.press_start: float | None = None
        self.chorded = False
        self.quiet_until = float("-inf")


class KeyFilter:
    """Raw edges from several keys in, whole presses out (pure; not thread-safe on its own)."""

    def __init__(self, keys: Iterable[str], timing: KeyTiming = KeyTiming()):
        self.timing = timing
        self._keys = {k: _Key() for k in keys}
        self._ends: deque[float] = deque()

    def edge(self, key: str, down: bool, t: float) -> Press | None:
        """Feed one edge at monotonic time `t`; return the press it completes, if any."""
        k = self._keys[key]
        db = self.timing.debounce_s
        if down == k.down:
            return None  # no change (a repeated report)
        previous = k.last_edge
        k.down, k.last_edge = down, t
        if t < k.quiet_until:  # the release is still bouncing
            k.quiet_until = t + db
            return None
        if down:
            if k.press_start is not None and t - previous < db:
                return None  # bounce inside a press
            k.press_start, k.chorded = t, False  # a new press (an earlier lone blip was a glitch)
            for name, other in self._keys.items():
                if name != key and self._in_press(other, t):
                    other.chorded = k.chorded = True
            return None
        if k.press_start is None or t - k.press_start < db or t - previous < db:
            return None  # a blip or bounce, not a release yet
        return self._decide(key, k, t)

    def _in_press(self, k: _Key, t: float) -> bool:
        return k.press_start is not None and (k.down or t - k.last_edge < self.timing.debounce_s)

    def _decide(self, key: str, k: _Key, t: float) -> Press:
        start = k.press_start
        assert start is not None
        k.press_start = None
        k.quiet_until = t + self.timing.debounce_s
        while self._ends and self._ends[0] <= t - self.timing.burst_window_s:
            self._ends.popleft()
        self._ends.append(t)
        if k.chorded:
            return Press(key, start, t, False, "chord")
        if t - start > self.timing.hold_max_s:
            return Press(key, start, t, False, "held")
        if len(self._ends) > self.timing.burst_max:
            return Press(key, start, t, False, "burst")
        return Press(key, start, t, True)

    def held(self, t: float) -> dict[str, float]:
        """Keys down right now, with how long they have been down."""
        return {name: t - k.press_start for name, k in self._keys.items()
                if k.press_start is not None and k.down}


# ---- gpiozero -----------------------------------------------------------------------------------

class RatingKeys:
    """The five level keys (and optional extras) as gpiozero Buttons behind a `KeyFilter`.

    Callbacks arrive on the pin factory's thread (lgpio's on a Pi; the caller's thread with MockFactory).
    They take a lock, run the filter and call `on_press(key)` / `on_reject(key, reason)`: both must only
    hand work on (submit an event, start a beep), never block.
    """

    def __init__(self, pins: dict[str, int], timing: KeyTiming = KeyTiming(), *, pull_up: bool = True,
                 pin_factory=None, on_press: Callable[[str], None] = lambda key: None,
                 on_reject: Callable[[str, str], None] = lambda key, reason: None,
                 clock: Callable[[], float] = time.monotonic):
        from gpiozero import Button

        self.pins = dict(pins)
        self.on_press = on_press
        self.on_reject = on_reject
        self.clock = clock
        self.filter = KeyFilter(pins, timing)
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self._lock = threading.Lock()
        self._divert: Callable[[Press], None] | None = None
        self.buttons = {}
        try:
            for name, pin in pins.items():
                b = Button(pin, pull_up=pull_up, bounce_time=None, pin_factory=pin_factory)
                b.when_pressed = partial(self._edge, name, True)
                b.when_released = partial(self._edge, name, False)
                self.buttons[name] = b
        except Exception:
            self.close()
            raise

    def _edge(self, key: str, down: bool) -> None:
        with self._lock:
            press = self.filter.edge(key, down, self.clock())
            divert = self._divert
        if press is None:
            return
        if divert is not None:
            divert(press)
            return
        if press.accepted:
            self.accepted += 1
            log.debug("key %s pressed (%.0f ms)", key, press.duration * 1000)
            self.on_press(key)
        else:
            self.rejected[press.reason] += 1
            log.warning("key %s rejected: %s (pressed %.0f ms)", key, press.reason, press.duration * 1000)
            self.on_reject(key, press.reason)

    @contextmanager
    def diverted(self, fn: Callable[[Press], None]) -> Iterator[None]:
        """While inside, every decided press (accepted or not) goes to `fn` instead (the self-test)."""
        with self._lock:
            self._divert = fn
        try:
            yield
        finally:
            with self._lock:
                self._divert = None

    def held(self) -> dict[str, float]:
        with self._lock:
            return self.filter.held(self.clock())

    def close(self) -> None:
        for b in self.buttons.values():
            b.close()
        self.buttons = {}


# ---- routing presses to the state machine --------------------------------------------------------

class ReasonCursor:
    """Which reason the soft-key cursor is on, and a one-line hint; shared by router and display."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.index = 0
        self.hint = ""
        self._listeners: list[Callable[[], None]] = []

    def on_change(self, fn: Callable[[], None]) -> None:
        self._listeners.append(fn)

    def set(self, index: int, hint: str = "") -> None:
        with self._lock:
            self.index, self.hint = index, hint
        for fn in self._listeners:
            fn()

    def get(self) -> tuple[int, str]:
        with self._lock:
            return self.index, self.hint


class KeyRouter:
    """Maps an accepted key press to a machine event using the latest state seen."""

    def __init__(self, submit: Callable[[object], None], flow: str = "screen",
                 cursor: ReasonCursor | None = None, extras: dict[str, Callable[[], None]] | None = None):
        self.submit = submit
        self.flow = flow
        self.cursor = cursor or ReasonCursor()
        self.extras = dict(extras or {})
        self._state = State()
        self._lock = threading.Lock()

    def state(self, s: State) -> None:
        """Watch callback (core thread): remember the state; a fresh reasons screen starts at the top."""
        with self._lock:
            entering = s.phase == Phase.REASONS and self._state.phase != Phase.REASONS
            self._state = s
        if entering:
            self.cursor.set(0)

    def press(self, key: str) -> None:
        """An accepted press (GPIO thread)."""
        if key in self.extras:
            self.extras[key]()
            return
        with self._lock:
            s = self._state
        if s.phase == Phase.REASONS:
            if self.flow == "keys":
                self._soft_key(SOFT_KEYS[key], s)
            else:
                log.info("key %s ignored: reasons are chosen on the touch screen", key)
            return
        self.submit(LevelPressed(Level(key), Channel.KEYS))

    def _soft_key(self, action: str, s: State) -> None:
        reasons = s.catalog.reasons if s.catalog else ()
        index, _ = self.cursor.get()
        if action == "back":
            self.submit(Back())
        elif action == "confirm":
            self.submit(ReasonsConfirmed())
            if not s.selected:
                self.cursor.set(index, "请至少选择一项原因")
        elif not reasons:
            self.cursor.set(0, "原因列表尚未下发，请扫码评价")
        elif action == "toggle":
            self.submit(ReasonToggled(reasons[index % len(reasons)].code))
            self.cursor.set(index % len(reasons))
        else:
            step = -1 if action == "up" else 1
            self.cursor.set((index + step) % len(reasons))
