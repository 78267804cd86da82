"""Small displays for buttons-only boxes: a 240×240 / 320×240 SPI LCD exposed as ``/dev/fbN`` (RGB565).

- `rgb565()` packs a PIL RGB image into little-endian RGB565 bytes (PIL alone, no numpy).
- `FramebufferDisplay` writes whole frames to the device file (path is a parameter: tests use a file);
  `MemoryDisplay` is its simulated twin (keeps the last frame).
- `SmallScreen` draws the terminal state: idle, the case with its QR, the reasons list with the soft-key
  cursor and labels, thanks, rated elsewhere, unavailable, and a print notice.
- `ScreenWorker` draws on its own thread; the core thread only drops the newest state in a slot.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

from PIL import Image, ImageChops, ImageDraw

from device.machine import Phase, State
from drivers.fonts import font, wrap
from drivers.keys import SOFT_KEYS, SOFT_LABELS
from drivers.printer import draw_qr

log = logging.getLogger(__name__)

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
GREEN, RED, BLUE, GREY, AMBER = (0, 160, 60), (220, 0, 0), (0, 70, 160), (200, 200, 200), (230, 150, 0)
_HI_R = [v & 0xF8 for v in range(256)]
_HI_G = [v >> 5 for v in range(256)]
_LO_G = [(v & 0x1C) << 3 for v in range(256)]
_LO_B = [v >> 3 for v in range(256)]


def rgb565(img: Image.Image) -> bytes:
    """RGB565 little-endian bytes of an RGB image (the fbtft / SPI LCD pixel format)."""
    r, g, b = img.convert("RGB").split()
    hi = ImageChops.add(r.point(_HI_R), g.point(_HI_G))
    lo = ImageChops.add(g.point(_LO_G), b.point(_LO_B))
    return Image.merge("LA", (lo, hi)).tobytes()


def pixel565(rgb: tuple[int, int, int]) -> int:
    r, g, b = rgb
    return ((r & 0xF8) << 8) | ((g & 0xFC) << 3) | (b >> 3)


class FramebufferDisplay:
    """A Linux framebuffer device (or a file of the same size) at RGB565."""

    def __init__(self, path: str | Path, width: int, height: int, rotation: int = 0, stride: int | None = None):
        self.path = Path(path)
        self.width, self.height, self.rotation = width, height, rotation
        self.stride = stride or width * 2
        self._fd = os.open(self.path, os.O_RDWR)
        size = os.fstat(self._fd).st_size
        if self.path.is_file() and size < self.stride * height:
            os.close(self._fd)
            raise OSError(f"{self.path} holds {size} bytes; a {width}×{height} RGB565 frame needs "
                          f"{self.stride * height}")

    @property
    def size(self) -> tuple[int, int]:
        """The drawing size (before rotation onto the panel)."""
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def show(self, img: Image.Image) -> None:
        if self.rotation:
            img = img.rotate(-self.rotation, expand=True)  # clockwise, like the panel's own setting
        if img.size != (self.width, self.height):
            raise ValueError(f"frame is {img.size}, panel is {(self.width, self.height)}")
        data = rgb565(img)
        row = self.width * 2
        if self.stride == row:
            os.pwrite(self._fd, data, 0)
        else:
            for y in range(self.height):
                os.pwrite(self._fd, data[y * row:(y + 1) * row], y * self.stride)

    def close(self) -> None:
        try:
            os.close(self._fd)
        except OSError:
            pass


class MemoryDisplay:
    """Simulated twin of `FramebufferDisplay`: keeps the last frame (``.frame``) and counts frames."""

    def __init__(self, width: int, height: int, rotation: int = 0):
        self.width, self.height, self.rotation = width, height, rotation
        self.frame: Image.Image | None = None
        self.frames = 0

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width) if self.rotation in (90, 270) else (self.width, self.height)

    def show(self, img: Image.Image) -> None:
        self.frame = img.copy()
        self.frames += 1

    def close(self) -> None:
        pass


class SmallScreen:
    """Draws a `State` (plus connectivity, soft-key cursor and a notice) at (width, height)."""

    BAR = 24

    def __init__(self, size: tuple[int, int], window_fallback: str = ""):
        self.w, self.h = size
        self.window_fallback = window_fallback

    def draw(self, s: State, *, online: bool = True, cursor: int = 0, hint: str = "", notice: str = "") -> Image.Image:
        img = Image.new("RGB", (self.w, self.h), WHITE)
        d = ImageDraw.Draw(img)
        self._bar(d, s, online)
        top = self.BAR + 4
        if s.phase == Phase.CASE and s.qr is not None:
            self._case(img, d, s, top)
        elif s.phase == Phase.REASONS:
            self._reasons(d, s, top, cursor, hint)
        elif s.phase in (Phase.THANKS, Phase.COMMITTING):
            self._centred(d, "谢谢您的评价！", 28, GREEN)
        elif s.phase == Phase.RATED_ELSEWHERE:
            self._centred(d, "您已通过手机完成评价，谢谢！", 22, GREEN)
        elif s.phase == Phase.UNAVAILABLE:
            if s.qr is not None:
                self._qr(img, s, top, self.h - top - 48)
                self._lines(d, ["暂时无法记录评价", "请扫描二维码评价"], self.h - 46, 18, RED)
            else:
                self._centred(d, "暂时无法记录评价，请稍后再试", 20, RED)
        else:
            staff = f"当班：{s.staff.name}（{s.staff.number or s.staff.id}）" if s.staff else ""
            self._centred(d, "您好，欢迎评价" + ("\n" + staff if staff else ""), 22, BLUE)
        if notice:
            self._notice(d, notice)
        return img

    # ---- parts --------------------------------------------------------------------------------

    def _bar(self, d: ImageDraw.ImageDraw, s: State, online: bool) -> None:
        d.rectangle((0, 0, self.w - 1, self.BAR - 1), fill=BLUE)
        d.text((4, 2), (s.window_name or self.window_fallback)[:12], font=font(18), fill=WHITE)
        d.ellipse((self.w - 20, 5, self.w - 6, 19), fill=GREEN if online else RED)

    def _qr(self, img: Image.Image, s: State, top: int, room: int) -> tuple[int, int, int]:
        n = len(s.qr.modules)
        scale = max(1, min(room, self.w) // (n + 4))
        side = n * scale
        x = (self.w - side) // 2
        y = top + (room - side) // 2
        ImageDraw.Draw(img).rectangle((x - 2 * scale, y - 2 * scale, x + side + 2 * scale - 1,
                                       y + side + 2 * scale - 1), fill=WHITE)
        draw_qr(img, s.qr.modules, x, y, scale, fill=BLACK)
        return x, y, scale

    def _case(self, img: Image.Image, d: ImageDraw.ImageDraw, s: State, top: int) -> None:
        self._qr(img, s, top, self.h - top - 44)
        self._lines(d, ["请按键评价本次服务", "或扫码评价（可留言）"], self.h - 42, 18, BLACK)

    def _reasons(self, d: ImageDraw.ImageDraw, s: State, top: int, cursor: int, hint: str) -> None:
        title = f"{s.level.zh if s.level else ''}：请选择原因"
        d.text((4, top), title, font=font(18), fill=RED)
        y0 = top + 24
        foot = self.h - 26
        reasons = s.catalog.reasons if s.catalog else ()
        if not reasons:
            self._lines(d, wrap("原因列表尚未下发，请扫码评价", 18, self.w - 8), y0 + 20, 18, BLACK)
        row = 26
        visible = max(1, (foot - y0 - (20 if hint else 0)) // row)
        first = min(max(0, cursor - visible + 1), max(0, len(reasons) - visible))
        for i, r in enumerate(reasons[first:first + visible], first):
            y = y0 + (i - first) * row
            if i == cursor:
                d.rectangle((0, y - 1, self.w - 1, y + row - 3), fill=BLUE)
            colour = WHITE if i == cursor else BLACK
            d.rectangle((4, y + 4, 18, y + 18), outline=colour, width=2)
            if r.code in s.selected:
                d.rectangle((8, y + 8, 14, y + 14), fill=colour)
            d.text((24, y + 1), r.zh[:11], font=font(18), fill=colour)
        if hint:
            d.text((4, foot - 20), hint[:14], font=font(16), fill=RED)
        d.rectangle((0, foot, self.w - 1, self.h - 1), fill=GREY)
        slot = self.w / len(SOFT_KEYS)
        f = font(16)
        for i, action in enumerate(SOFT_KEYS.values()):
            label = SOFT_LABELS[action]
            d.text((i * slot + (slot - f.getlength(label)) / 2, foot + 4), label, font=f, fill=BLACK)

    def _lines(self, d: ImageDraw.ImageDraw, lines: list[str], y: int, size: int, colour: tuple) -> None:
        f = font(size)
        for line in lines:
            d.text(((self.w - f.getlength(line)) / 2, y), line, font=f, fill=colour)
            y += size + 3

    def _centred(self, d: ImageDraw.ImageDraw, text: str, size: int, colour: tuple) -> None:
        lines = [part for para in text.split("\n") for part in wrap(para, size, self.w - 16)]
        height = len(lines) * (size + 3)
        self._lines(d, lines, self.BAR + (self.h - self.BAR - height) // 2, size, colour)

    def _notice(self, d: ImageDraw.ImageDraw, text: str) -> None:
        lines = wrap(text, 18, self.w - 16)
        top = self.h - 8 - len(lines) * 21
        d.rectangle((0, top - 6, self.w - 1, self.h - 1), fill=AMBER)
        self._lines(d, lines, top, 18, BLACK)


class ScreenWorker:
    """Draws the newest state on its own thread (the core thread only stores it)."""

    def __init__(self, display, screen: SmallScreen, *, online: Callable[[], bool] = lambda: True,
                 cursor: Callable[[], tuple[int, str]] = lambda: (0, ""), notice_s: float = 6.0,
                 clock: Callable[[], float] = time.monotonic):
        self.display, self.screen = display, screen
        self.online, self.cursor = online, cursor
        self.notice_s, self.clock = notice_s, clock
        self._state = State()
        self._notice = ("", 0.0)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.paused = False  # the self-test owns the panel
        self._thread = threading.Thread(target=self._run, name="small-screen", daemon=True)
        self._thread.start()

    def state(self, s: State) -> None:
        with self._lock:
            self._state = s
        self._wake.set()

    def refresh(self) -> None:
        self._wake.set()

    def notice(self, text: str) -> None:
        """Show `text` over the screen for notice_s seconds (e.g. a failed print)."""
        with self._lock:
            self._notice = (text, self.clock() + self.notice_s)
        self._wake.set()

    def render_now(self) -> Image.Image:
        with self._lock:
            s, (text, until) = self._state, self._notice
        index, hint = self.cursor()
        img = self.screen.draw(s, online=self.online(), cursor=index, hint=hint,
                               notice=text if self.clock() < until else "")
        self.display.show(img)
        return img

    def _run(self) -> None:
        last_notice = False
        while not self._stop.is_set():
            fired = self._wake.wait(timeout=1.0)
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                showing = self.clock() < self._notice[1]
            if (fired or showing != last_notice) and not self.paused:
                try:
                    self.render_now()
                except Exception:  # noqa: BLE001 - a broken panel must not kill the thread
                    log.exception("small screen draw failed")
            last_notice = showing

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=5)
        self.display.close()
