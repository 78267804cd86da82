"""Lights and sound: the status LED (online / offline / backlog / fault) and neutral key feedback.

Key feedback is deliberately the same for every key and every level (one flash, one beep): the staff at
the window must not be able to tell which level a citizen pressed (GB/T 39734 §4.1, no steering).
"""
from __future__ import annotations

import threading
from enum import Enum
from typing import Any, Collection

NON_FAULT_ALARMS = frozenset({"outbox_high"})  # shown as backlog, not as a fault


class Status(str, Enum):
    ONLINE = "online"
    OFFLINE = "offline"
    BACKLOG = "backlog"
    FAULT = "fault"


def terminal_status(online: bool, pending: int, quarantined: int, alarms: Collection[str],
                    backlog_records: int) -> Status:
    """What the status LED shows; fault > offline > backlog > online."""
    if quarantined or set(alarms) - NON_FAULT_ALARMS:
        return Status.FAULT
    if not online:
        return Status.OFFLINE
    if pending >= backlog_records or "outbox_high" in alarms:
        return Status.BACKLOG
    return Status.ONLINE


class StatusLight:
    """One mono LED or an RGB LED (gpiozero, no PWM) showing a `Status`.

    mono: on = online, short flash every 2 s = backlog, slow blink = offline, fast blink = fault.
    rgb:  green = online, blinking green = backlog, yellow = offline, blinking red = fault.
    """

    def __init__(self, led: Any, rgb: bool):
        self.led = led
        self.rgb = rgb
        self.status: Status | None = None
        self._lock = threading.Lock()

    def show(self, status: Status) -> None:
        with self._lock:
            if status == self.status:
                return
            self.status = status
            led = self.led
            if self.rgb:
                if status == Status.ONLINE:
                    led.color = (0, 1, 0)
                elif status == Status.BACKLOG:
                    led.blink(on_time=1.0, off_time=1.0, on_color=(0, 1, 0), off_color=(0, 0, 0))
                elif status == Status.OFFLINE:
                    led.color = (1, 1, 0)
                else:
                    led.blink(on_time=0.2, off_time=0.2, on_color=(1, 0, 0), off_color=(0, 0, 0))
            else:
                if status == Status.ONLINE:
                    led.on()
                elif status == Status.BACKLOG:
                    led.blink(on_time=0.2, off_time=1.8)
                elif status == Status.OFFLINE:
                    led.blink(on_time=1.0, off_time=1.0)
                else:
                    led.blink(on_time=0.2, off_time=0.2)

    def off(self) -> None:
        with self._lock:
            self.status = None
            self.led.off()

    def close(self) -> None:
        self.led.close()


class KeyFeedback:
    """The same flash and beep for every accepted key press; a distinct bell for the staff-call key."""

    def __init__(self, led: Any = None, buzzer: Any = None, flash_s: float = 0.15, beep_s: float = 0.06):
        self.led = led
        self.buzzer = buzzer
        self.flash_s = flash_s
        self.beep_s = beep_s

    def ack(self) -> None:
        """Non-blocking: gpiozero runs the pattern on its own thread."""
        if self.led is not None:
            self.led.blink(on_time=self.flash_s, off_time=0, n=1, background=True)
        if self.buzzer is not None:
            self.buzzer.beep(on_time=self.beep_s, off_time=0, n=1, background=True)

    def bell(self) -> None:
        """Call the window staff (not a rating, so it need not be neutral)."""
        if self.buzzer is not None:
            self.buzzer.beep(on_time=0.15, off_time=0.1, n=3, background=True)

    def close(self) -> None:
        for dev in (self.led, self.buzzer):
            if dev is not None:
                dev.close()
