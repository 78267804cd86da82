"""Looks in physical units: the palette (with its contrast maths), the type scale and the panel geometry.

Everything is specified in millimetres on the glass, then turned into pixels for the configured panel
(the reference is the official 7" 800×480 DSI touchscreen, ≈133 px per inch). No Kivy import here,
so the tests can check the rules (≥ 15 mm targets, ≥ 4.5:1 contrast) without a window.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from protocol.values import Level

MM_PER_INCH = 25.4
MIN_TARGET_MM = 15.0      # 适老化: every touch target at least this wide and tall
MIN_CONTRAST = 4.5        # WCAG 2.x AA for normal text

# Panels the layouts are checked against: (width px, height px, diagonal inches).
PANELS: dict[str, tuple[int, int, float]] = {
    "800x480": (800, 480, 7.0),     # Raspberry Pi Touch Display (DSI), the reference
    "1024x600": (1024, 600, 7.0),   # common 7" HDMI/DSI panels
    "1280x800": (1280, 800, 10.1),  # 10.1" panels
}


# ---- colours ----------------------------------------------------------------------------------

RGB = tuple[float, float, float]


def hex_rgb(value: str) -> RGB:
    """'#1a2b3c' → (r, g, b) in 0..1."""
    v = value.lstrip("#")
    return (int(v[0:2], 16) / 255, int(v[2:4], 16) / 255, int(v[4:6], 16) / 255)


def rgba(value: str, alpha: float = 1.0) -> tuple[float, float, float, float]:
    """A Kivy colour list from a hex string."""
    return (*hex_rgb(value), alpha)


def luminance(rgb: RGB) -> float:
    """WCAG relative luminance of an sRGB colour."""
    def lin(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (lin(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: RGB | str, bg: RGB | str) -> float:
    """WCAG contrast ratio, 1 … 21."""
    a = luminance(hex_rgb(fg) if isinstance(fg, str) else fg)
    b = luminance(hex_rgb(bg) if isinstance(bg, str) else bg)
    hi, lo = max(a, b), min(a, b)
    return (hi + 0.05) / (lo + 0.05)


@dataclass(frozen=True)
class Palette:
    """Named colours. Text colours are only ever used on the backgrounds listed in `pairs()`."""

    page: str = "#F3F5F8"          # screen background
    ink: str = "#15191F"           # main text
    muted: str = "#3F4856"         # secondary text
    bar: str = "#0B4A84"           # top bar, primary buttons, thank-you page
    on_bar: str = "#FFFFFF"
    card: str = "#FFFFFF"          # cards, QR quiet zone, secondary buttons
    border: str = "#6B7686"        # outlines (not text)
    accent: str = "#0B4A84"        # text on cards in the accent colour
    disabled: str = "#D6DAE1"
    on_disabled: str = "#3F4856"
    selected: str = "#0B4A84"      # a chosen reason
    on_selected: str = "#FFFFFF"
    offline: str = "#FFD34D"       # the offline badge (on the bar)
    on_offline: str = "#15191F"
    danger: str = "#A3201B"        # maintenance warnings on cards
    qr_dark: str = "#000000"
    qr_light: str = "#FFFFFF"

    # One colour per level; white text on each. Ordered very satisfied → very dissatisfied.
    levels: tuple[str, ...] = ("#1B6530", "#2E6F2A", "#6E5600", "#A5430F", "#A3201B")

    def level(self, level: Level) -> str:
        return self.levels[list(Level).index(level)]

    def pairs(self) -> list[tuple[str, str, str]]:
        """(what, text colour, background) for every text/background combination the screens use."""
        p = [("page text", self.ink, self.page), ("page muted", self.muted, self.page),
             ("card text", self.ink, self.card), ("card muted", self.muted, self.card),
             ("card accent", self.accent, self.card), ("card warning", self.danger, self.card),
             ("bar text", self.on_bar, self.bar), ("offline badge", self.on_offline, self.offline),
             ("disabled button", self.on_disabled, self.disabled),
             ("selected reason", self.on_selected, self.selected)]
        p += [(f"level {lv.value}", self.on_bar, c) for lv, c in zip(Level, self.levels)]
        return p


PALETTE = Palette()


# ---- type scale and geometry ------------------------------------------------------------------

# Em sizes in millimetres. Body text of 5 mm is about 14 pt: large for a 7" panel at arm's length.
TYPE_MM = {"caption": 4.0, "body": 5.0, "title": 6.5, "headline": 8.5, "display": 12.0}
MIN_TEXT_MM = TYPE_MM["caption"]


@dataclass(frozen=True)
class Geometry:
    """Turns millimetres into pixels for one panel; the screens lay themselves out with it."""

    width: int
    height: int
    dpi: float

    @classmethod
    def for_window(cls, width: int, height: int, panel_dpi: float = 0.0, diagonal_in: float = 7.0) -> "Geometry":
        """`panel_dpi` 0 derives the density from the pixel size and the diagonal."""
        dpi = panel_dpi or math.hypot(width, height) / diagonal_in
        return cls(int(width), int(height), float(dpi))

    def px(self, mm: float) -> float:
        return mm * self.dpi / MM_PER_INCH

    def mm(self, px: float) -> float:
        return px * MM_PER_INCH / self.dpi

    @property
    def target(self) -> float:
        """The smallest touch target, in pixels (rounded up)."""
        return math.ceil(self.px(MIN_TARGET_MM))

    def font(self, role: str) -> float:
        return round(self.px(TYPE_MM[role]))

    @property
    def gap(self) -> float:
        return round(self.px(2.0))

    @property
    def bar_height(self) -> float:
        return round(self.px(9.0))

    @property
    def width_mm(self) -> float:
        return self.mm(self.width)

    @property
    def height_mm(self) -> float:
        return self.mm(self.height)
