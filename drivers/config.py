"""The `[hardware]` section of the terminal's configuration (composed into device.config.Config as
`cfg.hardware`). Declared with the shared mechanism (configuration/); opening hours are checked by their
parser (drivers/hours.py), the one place their grammar lives.
"""
from __future__ import annotations

from dataclasses import dataclass

from drivers.hours import OpeningHours
from configuration.schema import opt


@dataclass(frozen=True)
class HardwareSection:
    """`[hardware]`: which board profile drives the terminal, and the drivers' policies."""

    profile: str = opt("", "hardware profile: a name shipped in drivers/profiles or a path to a TOML file; "
                       "empty = no hardware (touch screen or console only)")
    simulate: bool = opt(False, "drive the simulated twin of every driver (demo, bench, self-test without hardware)")
    sysfs_root: str = opt("/sys", "sysfs root for the backlight node (tests point it at a temp tree)")
    opening_hours: str = opt("", "opening hours; the backlight is off outside them, e.g. "
                             "'mon-fri 08:30-12:00,13:00-17:30; sat 09:00-12:00' (empty = always open)",
                             check=OpeningHours.parse)
    dim_after_s: int = opt(120, "dim the backlight after this long with no case, touch or key", min=10, max=86400)
    backlog_records: int = opt(20, "status LED shows 'backlog' when this many records wait for delivery",
                               min=1, max=10_000_000)
    center_name: str = opt("", "centre name printed on the rate-later slip; empty = the center id")
