"""Backlight: the sysfs node (``<root>/class/backlight/<node>``) or its simulated twin, and the keeper that
dims it when idle, wakes it on a case, touch or key, and turns it off outside opening hours.

Node discovery: the profile's node if named; else the only node; else the kernel's preferred type
(``firmware`` > ``platform`` > ``raw``), then a known Pi name (10-0045 Pi 4 DSI, 4-0045 Pi 5,
rpi_backlight legacy), then by name. Brightness is scaled by ``max_brightness`` (255, 31, even 1);
``bl_power`` 0 = on, 4 = off where the driver has it.
"""
from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Callable, Protocol

from device.machine import Phase, State
from drivers.hours import OpeningHours

log = logging.getLogger(__name__)
KNOWN_NODES = ("10-0045", "4-0045", "rpi_backlight")
TYPE_ORDER = ("firmware", "platform", "raw")
BL_ON, BL_OFF = 0, 4


class BacklightError(OSError):
    pass


class Backlight(Protocol):
    """What the keeper needs: set a percentage (0 = off) and read it back."""

    def set(self, percent: float) -> None: ...

    def read(self) -> tuple[float, bool]: ...


def discover(root: str | Path, node: str = "") -> Path:
    """The backlight node directory under `root` (a sysfs root such as /sys)."""
    base = Path(root) / "class" / "backlight"
    if node:
        path = base / node
        if not (path / "brightness").exists():
            raise BacklightError(f"backlight node {path} not found (backlight.node = {node!r})")
        return path
    nodes = sorted(p for p in base.glob("*") if (p / "brightness").exists()) if base.is_dir() else []
    if not nodes:
        raise BacklightError(f"no backlight under {base}")

    def rank(p: Path) -> tuple[int, int, str]:
        try:
            kind = (p / "type").read_text().strip()
        except OSError:
            kind = ""
        return (TYPE_ORDER.index(kind) if kind in TYPE_ORDER else len(TYPE_ORDER),
                KNOWN_NODES.index(p.name) if p.name in KNOWN_NODES else len(KNOWN_NODES), p.name)

    return min(nodes, key=rank)


class SysfsBacklight:
    """A sysfs backlight node (files are root-owned on a Pi: a udev rule gives the service group write)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self.max = int((self.path / "max_brightness").read_text().strip())
        except (OSError, ValueError) as e:
            raise BacklightError(f"{self.path}/max_brightness unreadable: {e}") from None
        if self.max < 1:
            raise BacklightError(f"{self.path}/max_brightness is {self.max}")
        self.has_power = (self.path / "bl_power").exists()

    def raw(self, percent: float) -> int:
        """The brightness value for `percent`; never 0 for a non-zero percentage."""
        if percent <= 0:
            return 0
        return max(1, min(self.max, round(self.max * percent / 100)))

    def set(self, percent: float) -> None:
        value = self.raw(percent)
        try:
            if value:
                (self.path / "brightness").write_text(f"{value}\n")
                if self.has_power:
                    (self.path / "bl_power").write_text(f"{BL_ON}\n")
            else:
                if self.has_power:
                    (self.path / "bl_power").write_text(f"{BL_OFF}\n")
                else:
                    (self.path / "brightness").write_text("0\n")
        except OSError as e:
            raise BacklightError(f"cannot write {self.path}: {e}") from None

    def read(self) -> tuple[float, bool]:
        """(percent from `brightness`, powered) as the kernel has them."""
        value = int((self.path / "brightness").read_text().strip())
        powered = True
        if self.has_power:
            powered = int((self.path / "bl_power").read_text().strip()) == BL_ON
        return 100 * value / self.max, powered and value > 0


class SimBacklight:
    """The simulated twin: remembers what was set."""

    def __init__(self, steps: int = 255):
        self.max = steps
        self.percent = 100.0
        self.history: list[float] = []

    def set(self, percent: float) -> None:
        self.percent = float(percent)
        self.history.append(self.percent)

    def read(self) -> tuple[float, bool]:
        return self.percent, self.percent > 0


class BacklightKeeper:
    """Policy: bright while a citizen is at the window or after activity; dim when idle in opening hours;
    off outside them. `tick()` applies it (called from the drivers' ticker thread)."""

    def __init__(self, backlight: Backlight, *, bright: float = 100, dim: float = 20, dim_after_s: float = 120,
                 hours: OpeningHours = OpeningHours(), clock: Callable[[], float] = time.monotonic,
                 local_now: Callable[[], datetime] = datetime.now,
                 on_error: Callable[[str], None] = lambda detail: None):
        self.backlight = backlight
        self.bright, self.dim, self.dim_after_s = bright, dim, dim_after_s
        self.hours = hours
        self.clock, self.local_now = clock, local_now
        self.on_error = on_error
        self.mode = ""  # "bright" | "dim" | "off" once applied
        self._lock = threading.Lock()
        self._last_activity = clock()
        self._busy = False
        self._case_id = ""
        self._failed = False

    def activity(self) -> None:
        """A touch or a key: wake now."""
        with self._lock:
            self._last_activity = self.clock()
        self.tick()

    def on_state(self, s: State) -> None:
        """Watch callback: a new case wakes the screen; it stays bright while a citizen is rating."""
        with self._lock:
            case_id = s.case.id if s.case is not None else ""
            woke = case_id != self._case_id and case_id != ""
            self._case_id = case_id
            was_busy, self._busy = self._busy, s.phase != Phase.IDLE
            if woke or self._busy or was_busy:
                self._last_activity = self.clock()
        self.tick()

    def wanted(self) -> str:
        with self._lock:
            if self._busy or self.clock() - self._last_activity < self.dim_after_s:
                return "bright"
        return "dim" if self.hours.is_open(self.local_now()) else "off"

    @property
    def is_dark(self) -> bool:
        """The screen cannot be seen: off, or 'dimmed' to 0 %."""
        return self.mode == "off" or (self.mode == "dim" and self.dim <= 0)

    def tick(self) -> str:
        mode = self.wanted()
        with self._lock:
            if mode == self.mode:
                return mode
            try:
                self.backlight.set({"bright": self.bright, "dim": self.dim, "off": 0}[mode])
            except OSError as e:
                if not self._failed:
                    log.error("backlight: %s", e)
                    self.on_error(str(e))
                self._failed = True
                return self.mode
            self._failed = False
            self.mode = mode
        log.debug("backlight %s", mode)
        return mode
