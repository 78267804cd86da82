"""The core's public port: what views (the kiosk in ui/, drivers/, the console) may see and call.

Everything a view renders comes from one `Snapshot`, published by the core thread on every change: the
state, the window served and its name, the UI settings in force, connectivity, outbox counts, alarms and
pairing all belong to the same moment, so a screen can never show one window's title with another's QR
codes or counts. Views call only what `TerminalPort` lists. The vocabulary they share with the core
(states, events, values) is `device.machine`, `device.model`, `device.qr` (the QR matrix) and `protocol`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from device.enrolment import Pairing
from device.machine import Event, State

if TYPE_CHECKING:  # pragma: no cover
    from drivers.config import HardwareSection
    from ui.config import UiSection


@dataclass(frozen=True)
class Snapshot:
    """The terminal as views see it, at one moment (built on the core thread only)."""

    state: State
    device_id: str
    center: str
    window: str                  # the window served now
    window_name: str             # its name from the binding ("" when configured by hand or not bound)
    ui: UiSection                # the `[ui]` settings in force (a binding brings the hall and staff QR)
    hardware: HardwareSection    # the `[hardware]` settings
    online: bool
    problem: str | None          # why the terminal is not connected (host:port, in words); None when connected
    pending: int                 # records waiting for a receipt
    quarantined: int
    capacity: int
    alarms: tuple[str, ...]      # active alarm codes, sorted
    last_error: str
    pairing: Pairing | None      # what the Unpaired screen shows; None while rating at a window
    mode: str                    # plain | enrolling | paired
    broker: tuple[str, int]      # host, port
    firmware: str
    data_dir: str
    ca_file: str


Watcher = Callable[[Snapshot], None]


class TerminalPort(Protocol):
    """What a view may call on the terminal (thread-safe unless noted)."""

    device_id: str

    @property
    def snapshot(self) -> Snapshot:
        """The latest published snapshot."""

    @property
    def alive(self) -> bool:
        """The core thread is running (the kiosk's systemd watchdog)."""

    def submit(self, event: Event) -> None:
        """Hand an input to the core thread."""

    def watch(self, fn: Watcher) -> None:
        """`fn(snapshot)` now, then on the core thread after every change; keep it short."""

    def requeue(self) -> int:
        """Maintenance: offer the quarantined records again; how many there were."""

    def re_enrol(self) -> str:
        """Maintenance: forget this terminal's account and announce again (ValueError when configured by hand)."""

    def raise_alarm(self, code: str, detail: str) -> None:
        """A hardware problem the center should hear of (printer, keys, backlight)."""

    def clear_alarm(self, code: str) -> None: ...
