"""The `[ui]` section of the terminal's configuration (composed into device.config.Config as `cfg.ui`).

Declared with the shared mechanism (configuration/); imports no Kivy, so the core can compose it.
"""
from __future__ import annotations

from dataclasses import dataclass

from configuration.schema import LOCAL_HTTP, opt


@dataclass(frozen=True)
class UiSection:
    """`[ui]`: the kiosk screens, voice and panel; keys as `HCP_UI_<KEY>` in the environment."""

    language: str = opt("zh", "UI language", choices=("zh", "en"))
    maintenance_pin: str = opt("", "PIN for the maintenance screen; empty = maintenance disabled", secret=True,
                               pattern=r"^([0-9]{4,12})?$")
    maintenance_timeout_s: int = opt(120, "the maintenance screen closes after this long untouched", min=15,
                                     max=3600)
    hall_qr_url: str = opt("", "hall rating QR (大厅评价) URL; empty = not shown; http:// only to a loopback or "
                           "private address", pattern=rf"^((https://|{LOCAL_HTTP})\S+)?$")
    staff_qr_template: str = opt("", "staff rating QR (人员评价) URL with {staff} for the staff id; empty = "
                                 "not shown", pattern=rf"^((https://|{LOCAL_HTTP})\S*\{{staff\}}\S*)?$")
    panel_dpi: float = opt(0.0, "panel pixels per inch; 0 = from the window size and panel_diagonal_in",
                           min=0, max=600)
    panel_diagonal_in: float = opt(7.0, "panel diagonal in inches (7 = the 800×480 DSI touchscreen)", min=2,
                                   max=40)
    fullscreen: str = opt("auto", "auto = full screen on the kiosk (KMSDRM), a window on a desktop; yes; no",
                          choices=("auto", "yes", "no"))
    rotation: int = opt(0, "screen rotation in degrees: 0, 90, 180 or 270", min=0, max=270)
    window_size: str = opt("800x480", "window size on a desktop", pattern=r"^[0-9]{3,4}x[0-9]{3,4}$")
    idle_fps: int = opt(10, "frame-rate cap while idle and untouched for idle_after_s (0 = never lower)",
                        min=0, max=60)
    idle_after_s: int = opt(10, "seconds without activity before idle_fps applies", min=1, max=3600)
    touch_guard_ms: int = opt(300, "touches this soon after a screen change are ignored (double taps)",
                              min=0, max=2000)
    voice: str = opt("builtin", "voice prompts: builtin = the shipped ones (ui/voice/); a folder of "
                     "<language>/<prompt>.wav files (a center's own; missing ones come from ui/voice/); "
                     "empty = silent")
    voice_player: str = opt("aplay -q", "command that plays one WAV file (its path is appended)")
