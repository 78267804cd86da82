"""The few widgets the screens are made of: panels, text, big buttons, QR codes, the top bar, a PIN pad.

Sizes come from `ui.theme.Geometry` (millimetres on the glass), colours from `ui.theme.PALETTE`.
Widgets only display what they are given and call back; they hold no business rules.
Every widget that paints a background exposes it as `bg_hex`, so tests can check the contrast of
every label against what is really behind it.
"""
from __future__ import annotations

from typing import Callable, Sequence

from kivy.core.text import DEFAULT_FONT, LabelBase
from kivy.core.text import Label as CoreLabel
from kivy.graphics import Color, Ellipse, Line, Rectangle, RoundedRectangle
from kivy.graphics.texture import Texture
from kivy.properties import NumericProperty, ObjectProperty, StringProperty
from kivy.uix.behaviors import ButtonBehavior
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.image import Image
from kivy.uix.label import Label
from kivy.uix.widget import Widget

from protocol.values import LEVELS, Level
from ui.env import FONT
from ui.i18n import NO_STAR, STAR
from ui.theme import PALETTE, Geometry, rgba


def use_shipped_font() -> None:
    """Make the shipped CJK font (WenQuanYi Micro Hei, with Latin) Kivy's default: Roboto has no
    Chinese glyphs and Kivy has no glyph fallback."""
    LabelBase.register(DEFAULT_FONT, str(FONT))


use_shipped_font()


class Backdrop:
    """Mixin: paints `bg_hex` (rounded by `radius`, outlined by `border_hex`) behind the widget."""

    bg_hex = StringProperty("")
    border_hex = StringProperty("")
    radius = NumericProperty(0)

    def _init_backdrop(self) -> None:
        with self.canvas.before:
            self._bg_color = Color(0, 0, 0, 0)
            self._bg_rect = RoundedRectangle(pos=self.pos, size=self.size, radius=[self.radius])
            self._border_color = Color(0, 0, 0, 0)
            self._border = Line(width=1.2)
        self.bind(pos=self._redraw_backdrop, size=self._redraw_backdrop, bg_hex=self._redraw_backdrop,
                  border_hex=self._redraw_backdrop, radius=self._redraw_backdrop)
        self._redraw_backdrop()

    def _redraw_backdrop(self, *_) -> None:
        self._bg_color.rgba = rgba(self.bg_hex) if self.bg_hex else (0, 0, 0, 0)
        self._bg_rect.pos, self._bg_rect.size = self.pos, self.size
        self._bg_rect.radius = [self.radius]
        self._border_color.rgba = rgba(self.border_hex) if self.border_hex else (0, 0, 0, 0)
        self._border.rounded_rectangle = (self.x, self.y, self.width, self.height, max(self.radius, 1))


class Panel(Backdrop, BoxLayout):
    """A box with a background: the page, a card, the top bar."""

    def __init__(self, bg: str = "", radius: float = 0, border: str = "", **kw):
        super().__init__(**kw)
        self.bg_hex, self.radius, self.border_hex = bg, radius, border
        self._init_backdrop()


BREAK_AFTER = "，、。：；！？）」』》,.:;!?)"  # a wrapped line may well end after these


def text_width(text: str, font_size: float, font_name: str = str(FONT)) -> float:
    """The width of `text` on one line (in the shipped font unless told), in pixels."""
    return CoreLabel(text=text, font_size=font_size, font_name=font_name).get_extents(text)[0]


def _lines(text: str, label: Label, width: float) -> list[str]:
    core = CoreLabel(text=text, font_size=label.font_size, font_name=label.font_name, text_size=(width, None))
    core.refresh()
    return ["".join(w.text for w in line.words) for line in core._cached_lines]


def balance_padding(label: Label) -> list[float]:
    """Padding that narrows a wrapping CJK label so its lines come out even (CSS `text-wrap: balance`):
    no line of one lone character ("…上传图" / "片"), no "请至少选择一项" / "原因"; a break after
    punctuation is preferred when it keeps the number of lines. [0, 0, 0, 0] when nothing wraps."""
    text, width = label.text, label.text_size[0]
    none = [0, 0, 0, 0]
    if not width or label.markup or label.shorten or "\n" in text or not any(ord(c) > 0x2E7F for c in text):
        return none
    natural = _lines(text, label, width)
    if len(natural) < 2:
        return none
    lo, hi = width / len(natural), width  # the narrowest width that still gives as many lines
    while hi - lo > 1:
        mid = (lo + hi) / 2
        if len(_lines(text, label, mid)) <= len(natural):
            hi = mid
        else:
            lo = mid
    best = hi
    if len(natural) == 2:  # prefer a break after punctuation, if one keeps two lines and is not wider
        for i, ch in enumerate(text[:-2]):
            if ch in BREAK_AFTER:
                w = text_width(text[:i + 1], label.font_size, label.font_name) + 1
                if hi <= w <= width and len(_lines(text, label, w)) == 2:
                    best = w
                    break
    extra = max(0.0, width - best - 1)
    if label.halign == "center":
        return [extra / 2, 0, extra / 2, 0]
    if label.halign == "right":
        return [extra, 0, 0, 0]
    return [0, 0, extra, 0]


class Balanced:
    """Mixin for wrapping labels: keep `padding` at `balance_padding` whenever text or width changes."""

    def _init_balance(self) -> None:
        self.bind(text=self._balance, text_size=self._balance, font_size=self._balance)
        self._balance()

    def _balance(self, *_) -> None:
        self.padding = balance_padding(self)


class Text(Balanced, Label):
    """A label sized by role (caption, body, title, headline, display) that wraps inside its box."""

    role = StringProperty("body")

    def __init__(self, geo: Geometry, text: str = "", role: str = "body", color: str = PALETTE.ink,
                 halign: str = "left", valign: str = "middle", lines: int = 1, shorten: bool = False, **kw):
        font = geo.font(role)
        kw.setdefault("size_hint_y", None)
        if kw["size_hint_y"] is None:
            kw.setdefault("height", round(font * 1.3 * lines))
        super().__init__(text=text, font_size=font, color=rgba(color), halign=halign, valign=valign,
                         shorten=shorten, shorten_from="right", **kw)
        self.role = role
        self.fg_hex = color
        self.bind(size=self._wrap)
        self._wrap()
        self._init_balance()

    def _wrap(self, *_) -> None:
        self.text_size = (self.width, self.height)

    def set_color(self, hex_color: str) -> None:
        self.fg_hex = hex_color
        self.color = rgba(hex_color)


class BigButton(Balanced, Backdrop, ButtonBehavior, Label):
    """A large, high-contrast button; `on_press_cb` is called on release inside the button."""

    fg_hex = StringProperty(PALETTE.on_bar)

    def __init__(self, geo: Geometry, text: str = "", on_press_cb: Callable[[], None] | None = None,
                 bg: str = PALETTE.bar, fg: str = PALETTE.on_bar, border: str = "", role: str = "body",
                 **kw):
        super().__init__(text=text, font_size=geo.font(role), halign="center", valign="middle", **kw)
        self.geo = geo
        self.enabled_bg, self.enabled_fg = bg, fg
        self.bg_hex, self.fg_hex, self.border_hex = bg, fg, border
        self.radius = geo.px(2)
        self.callback = on_press_cb
        self._init_backdrop()
        self.bind(size=self._wrap, disabled=self._restyle, state=self._restyle, fg_hex=self._restyle)
        self._wrap()
        self._restyle()
        self._init_balance()

    def _wrap(self, *_) -> None:
        self.text_size = (max(1, self.width - self.geo.px(2)), None)

    def restyle(self, bg: str, fg: str, border: str = "") -> None:
        self.enabled_bg, self.enabled_fg = bg, fg
        self.border_hex = border
        self._restyle()

    def _restyle(self, *_) -> None:
        if self.disabled:
            bg, fg = PALETTE.disabled, PALETTE.on_disabled
        else:
            bg, fg = self.enabled_bg, self.enabled_fg
        self.bg_hex = bg
        self.color = rgba(fg)
        self.disabled_color = rgba(fg)
        self._pressed_shade()

    def _pressed_shade(self) -> None:
        # a pressed button darkens a little: feedback under the finger, same contrast
        if hasattr(self, "_bg_color"):
            self._bg_color.rgba = rgba(self.bg_hex, 0.82 if self.state == "down" else 1.0)

    def _redraw_backdrop(self, *_) -> None:
        super()._redraw_backdrop()
        self._pressed_shade()

    def on_release(self) -> None:
        if self.callback is not None:
            self.callback()


def stars(level: Level) -> str:
    filled = len(LEVELS) - LEVELS.index(level)
    return STAR * filled + NO_STAR * (len(LEVELS) - filled)


class LevelButton(BigButton):
    """Stars over the level's words, in the level's colour."""

    def __init__(self, geo: Geometry, level: Level, label: str, on_press_cb: Callable[[], None]):
        self.level = level
        super().__init__(geo, "", on_press_cb, bg=PALETTE.level(level), fg=PALETTE.on_bar, role="body",
                         markup=True)
        self.set_label(label)

    def set_label(self, label: str) -> None:
        star_px = round(self.geo.font("caption"))
        self.text = f"[size={star_px}]{stars(self.level)}[/size]\n{label}"
        self.plain_text = label


def qr_texture(modules: Sequence[Sequence[bool]], quiet: int = 4) -> Texture:
    """One texel per module plus the quiet zone, black on white; drawn with nearest filtering."""
    n = len(modules)
    size = n + 2 * quiet
    white, black = b"\xff\xff\xff\xff", b"\x00\x00\x00\xff"
    rows = []
    blank = white * size
    for _ in range(quiet):
        rows.append(blank)
    for row in modules:
        rows.append(white * quiet + b"".join(black if m else white for m in row) + white * quiet)
    for _ in range(quiet):
        rows.append(blank)
    tex = Texture.create(size=(size, size), colorfmt="rgba")
    tex.mag_filter = "nearest"
    tex.min_filter = "nearest"
    # GL textures start at the bottom row: hand the rows over bottom first so the code is not mirrored
    tex.blit_buffer(b"".join(reversed(rows)), colorfmt="rgba", bufferfmt="ubyte")
    return tex


class QrView(Widget):
    """A QR code at the largest whole number of pixels per module that fits, centred."""

    modules = ObjectProperty(None, allownone=True)
    bg_hex = StringProperty(PALETTE.qr_light)

    def __init__(self, **kw):
        super().__init__(**kw)
        self._texture: Texture | None = None
        self._key = None
        with self.canvas:
            self._color = Color(1, 1, 1, 1)
            self._rect = Rectangle()
        self.bind(pos=self._layout, size=self._layout, modules=self._set_modules)

    def show(self, modules) -> None:
        self.modules = modules

    def _set_modules(self, *_) -> None:
        if self.modules is None:
            self._texture = None
        elif self.modules is not self._key:
            self._texture = qr_texture(self.modules)
        self._key = self.modules
        self._layout()

    @property
    def module_px(self) -> int:
        if self._texture is None:
            return 0
        return int(min(self.width, self.height) // self._texture.width)

    def _layout(self, *_) -> None:
        if self._texture is None:
            self._color.a = 0
            return
        side = self.module_px * self._texture.width
        self._color.a = 1
        self._rect.texture = self._texture
        self._rect.size = (side, side)
        self._rect.pos = (round(self.x + (self.width - side) / 2), round(self.y + (self.height - side) / 2))

    @property
    def qr_rect(self) -> tuple[float, float, float, float]:
        """Where the code (with its quiet zone) is drawn, in window coordinates."""
        x, y = self.to_window(*self._rect.pos)
        return x, y, self._rect.size[0], self._rect.size[1]


class Avatar(Backdrop, Widget):
    """The staff photo when there is one, else the first character of the name in a circle."""

    def __init__(self, geo: Geometry, **kw):
        super().__init__(**kw)
        self.geo = geo
        self.bg_hex = PALETTE.bar
        self.radius = 0
        self._init_backdrop()
        self._bg_color.a = 0  # the circle below replaces the rectangle
        with self.canvas:
            self._circle_color = Color(*rgba(PALETTE.bar))
            self._circle = Ellipse()
        self.initial = Text(geo, "", role="headline", color=PALETTE.on_bar, halign="center", size_hint=(None, None))
        self.photo = Image(fit_mode="contain", size_hint=(None, None), opacity=0)
        self.add_widget(self.initial)
        self.add_widget(self.photo)
        self.bind(pos=self._layout, size=self._layout)

    def _redraw_backdrop(self, *_) -> None:
        super()._redraw_backdrop()
        self._bg_color.a = 0

    def show(self, name: str, photo_path: str | None) -> None:
        self.initial.text = name[:1]
        if photo_path and self.photo.source != photo_path:
            self.photo.source = photo_path
        has_photo = bool(photo_path) and self.photo.texture is not None
        self.photo.opacity = 1 if has_photo else 0
        self.initial.opacity = 0 if has_photo else 1
        self._circle_color.a = 0 if has_photo else 1

    def _layout(self, *_) -> None:
        # (center_x/center_y can lag behind a size change inside this callback: compute from x, y, size)
        side = min(self.width, self.height)
        x, y = self.x + (self.width - side) / 2, self.y + (self.height - side) / 2
        self._circle.pos, self._circle.size = (x, y), (side, side)
        self.initial.size = (side, side)
        self.initial.pos = (x, y)
        self.photo.size = (side, side)
        self.photo.pos = (x, y)


class CheckMark(Widget):
    """A drawn tick in a ring (the font's check glyphs look like a root sign at large sizes)."""

    def __init__(self, color: str, **kw):
        super().__init__(**kw)
        with self.canvas:
            Color(*rgba(color))
            self._ring = Line(width=2)
            self._tick = Line(width=4, cap="round", joint="round")
        self.bind(pos=self._draw, size=self._draw)

    def _draw(self, *_) -> None:
        side = min(self.width, self.height)
        x, y = self.x + (self.width - side) / 2, self.y + (self.height - side) / 2
        self._ring.width = max(1.5, side / 30)
        self._ring.circle = (x + side / 2, y + side / 2, side / 2 - self._ring.width)
        self._tick.width = max(2.0, side / 14)
        self._tick.points = [x + side * 0.28, y + side * 0.52, x + side * 0.44, y + side * 0.34,
                             x + side * 0.73, y + side * 0.68]


class TopBar(Panel):
    """Window name on the left; the quiet status indicator and the clock on the right."""

    def __init__(self, geo: Geometry, **kw):
        pad = geo.gap
        super().__init__(bg=PALETTE.bar, orientation="horizontal", size_hint_y=None, height=geo.bar_height,
                         padding=(pad * 2, 0), spacing=pad * 2, **kw)
        self.title = Text(geo, "", role="body", color=PALETTE.on_bar, size_hint_y=1, shorten=True)
        self.status = Badge(geo)
        self.clock = Text(geo, "", role="body", color=PALETTE.on_bar, halign="right", size_hint=(None, 1),
                          width=round(geo.font("body") * 3.2))
        self.add_widget(self.title)
        self.add_widget(self.status)
        self.add_widget(self.clock)

    def show(self, title: str, status: str, online: bool, clock: str) -> None:
        self.title.text = title
        self.status.show(status, online)
        self.clock.text = clock


class Badge(Backdrop, Label):
    """The connectivity / outbox indicator: quiet when online, a yellow pill when offline."""

    def __init__(self, geo: Geometry, **kw):
        super().__init__(font_size=geo.font("caption"), size_hint=(None, None), halign="center",
                         valign="middle", pos_hint={"center_y": 0.5}, **kw)
        self.geo = geo
        self.radius = geo.px(1.5)
        self.online = True
        self._init_backdrop()
        self.bind(texture_size=self._fit)

    def show(self, text: str, online: bool) -> None:
        self.online = online
        self.text = text
        self.bg_hex = PALETTE.bar if online else PALETTE.offline
        self.color = rgba(PALETTE.on_bar if online else PALETTE.on_offline)
        self._fit()

    def _fit(self, *_) -> None:
        self.texture_update()
        self.width = self.texture_size[0] + self.geo.px(4)
        self.height = self.geo.font("caption") * 1.5


class PinPad(GridLayout):
    """Digits 1–9, Delete, 0, OK; each key at least the minimum touch target."""

    def __init__(self, geo: Geometry, t, on_digit: Callable[[str], None], on_delete: Callable[[], None],
                 on_ok: Callable[[], None], **kw):
        super().__init__(cols=3, spacing=geo.gap, **kw)
        self.keys: list[BigButton] = []
        for label in ("1", "2", "3", "4", "5", "6", "7", "8", "9"):
            self._key(geo, label, lambda d=label: on_digit(d), PALETTE.card, PALETTE.ink, role="title")
        self._key(geo, t("maint.delete"), on_delete, PALETTE.card, PALETTE.ink)
        self._key(geo, "0", lambda: on_digit("0"), PALETTE.card, PALETTE.ink, role="title")
        self._key(geo, t("maint.ok"), on_ok, PALETTE.bar, PALETTE.on_bar)

    def _key(self, geo, label, cb, bg, fg, role="body") -> None:
        b = BigButton(geo, label, cb, bg=bg, fg=fg, border=PALETTE.border, role=role)
        self.keys.append(b)
        self.add_widget(b)

    def set_enabled(self, enabled: bool) -> None:
        for k in self.keys:
            k.disabled = not enabled
