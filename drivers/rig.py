"""A `Rig`: every driver a hardware profile describes, built for real hardware or as simulated twins.

The seam is the lowest one: pins go through a gpiozero pin factory (the default lgpio/RPi.GPIO one on
a board, `MockFactory` in simulation); the backlight through sysfs (or `SimBacklight`); the printer
through python-escpos (or its `Dummy`); the small display through a framebuffer file (or `MemoryDisplay`).
A part that cannot be opened is left out and named in `problems`; the rest still works.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from drivers.backlight import BacklightError, SimBacklight, SysfsBacklight, discover
from drivers.display import FramebufferDisplay, MemoryDisplay
from drivers.feedback import KeyFeedback, StatusLight
from drivers.keys import KeyTiming, RatingKeys
from drivers.printer import FAILED_MESSAGE, FAILED_MESSAGE_BOX, SlipPrinter
from drivers.profile import Profile, load_profile

log = logging.getLogger(__name__)


class Rig:
    def __init__(self, profile: Profile | str, *, simulate: bool | None = None, pin_factory: Any = None,
                 sysfs_root: str = "/sys", key_clock: Callable[[], float] = time.monotonic,
                 printer_factory: Callable[[], Any] | None = None):
        self.profile = load_profile(profile) if isinstance(profile, str) else profile
        p = self.profile
        self.simulate = p.simulate if simulate is None else (simulate or p.simulate)
        self.problems: dict[str, str] = {}
        if pin_factory is None and self.simulate:
            from gpiozero import Device
            from gpiozero.pins.mock import MockFactory

            pin_factory = Device.pin_factory if isinstance(Device.pin_factory, MockFactory) else MockFactory()
        self.pin_factory = pin_factory
        self.keys: RatingKeys | None = None
        self.status: StatusLight | None = None
        self.feedback = KeyFeedback()
        self.backlight: Any = None
        self.printer: SlipPrinter | None = None
        self.display: Any = None

        if p.keys is not None:
            k = p.keys
            timing = KeyTiming(k.debounce_ms / 1000, k.hold_max_ms / 1000, k.burst_max, k.burst_window_ms / 1000)
            self._part("keys", lambda: setattr(self, "keys", RatingKeys(
                k.pins, timing, pull_up=k.pull_up, pin_factory=pin_factory, clock=key_clock)))
        self._part("status_led", self._status_led)
        self._part("feedback", self._feedback)
        if p.backlight.driver == "sysfs":
            self._part("backlight", lambda: setattr(self, "backlight", SimBacklight() if self.simulate else
                                                    SysfsBacklight(discover(sysfs_root, p.backlight.node))))
        if p.printer.connection != "none":
            message = FAILED_MESSAGE if p.display.kind == "panel" else FAILED_MESSAGE_BOX
            self._part("printer", lambda: setattr(self, "printer", SlipPrinter(
                p.printer, simulate=self.simulate, factory=printer_factory, failed_message=message)))
        if p.display.kind == "fb":
            d = p.display
            self._part("display", lambda: setattr(self, "display", MemoryDisplay(d.width, d.height, d.rotation)
                                                  if self.simulate else
                                                  FramebufferDisplay(d.device, d.width, d.height, d.rotation)))

    def _part(self, name: str, build: Callable[[], Any]) -> None:
        try:
            build()
        except (OSError, BacklightError, ValueError, RuntimeError) as e:
            self.problems[name] = str(e)
            log.error("hardware %s unavailable: %s", name, e)
        except Exception as e:  # noqa: BLE001 - gpiozero raises its own families (pin in use, no factory…)
            self.problems[name] = f"{type(e).__name__}: {e}"
            log.error("hardware %s unavailable: %s: %s", name, type(e).__name__, e)

    def _status_led(self) -> None:
        s = self.profile.status_led
        if s.kind == "mono":
            from gpiozero import LED
            self.status = StatusLight(LED(s.pin, active_high=s.active_high, pin_factory=self.pin_factory), rgb=False)
        elif s.kind == "rgb":
            from gpiozero import RGBLED
            self.status = StatusLight(RGBLED(s.red, s.green, s.blue, active_high=s.active_high, pwm=False,
                                             pin_factory=self.pin_factory), rgb=True)

    def _feedback(self) -> None:
        from gpiozero import LED, Buzzer
        f = self.profile.feedback
        led = LED(f.led, active_high=f.active_high, pin_factory=self.pin_factory) if f.led is not None else None
        try:
            buzzer = (Buzzer(f.buzzer, active_high=f.active_high, pin_factory=self.pin_factory)
                      if f.buzzer is not None else None)
        except Exception:
            if led is not None:
                led.close()
            raise
        self.feedback = KeyFeedback(led, buzzer, flash_s=f.flash_ms / 1000, beep_s=f.beep_ms / 1000)

    # ---- simulation helpers ------------------------------------------------------------------

    def pin(self, key: str) -> Any:
        """The (mock) pin object of a key."""
        assert self.profile.keys is not None
        return self.pin_factory.pin(self.profile.keys.pins[key])

    def press(self, key: str, hold_s: float = 0.08) -> None:
        """Press and release a key on the mock pins (simulation, self-test, demo)."""
        pin = self.pin(key)
        down, up = (pin.drive_low, pin.drive_high) if self.profile.keys.pull_up else (pin.drive_high, pin.drive_low)
        down()
        time.sleep(hold_s)
        up()

    def close(self) -> None:
        for part in (self.keys, self.status, self.feedback, self.display):
            if part is not None:
                try:
                    part.close()
                except Exception:  # noqa: BLE001
                    log.exception("closing %s", type(part).__name__)
        if self.printer is not None:
            self.printer.close()
