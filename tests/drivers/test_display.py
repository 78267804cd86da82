"""The small framebuffer display: RGB565 packing, a file-backed /dev/fbN, and what each state shows."""
from __future__ import annotations

import struct

import pytest
from fontTools.ttLib import TTCollection
from hypothesis import given, strategies as st
from PIL import Image, ImageDraw

from device.machine import Phase, State
from protocol.values import Level
from drivers.display import (BLUE, GREEN, RED, FramebufferDisplay, MemoryDisplay, ScreenWorker, SmallScreen,
                             pixel565, rgb565)
from devkit.waiting import wait_for
from drivers.fonts import FONT_PATH
from drivers.keys import SOFT_LABELS
from tests.drivers.conftest import CATALOG, STAFF, case_state


def fb_pixel(path, width: int, x: int, y: int) -> int:
    with open(path, "rb") as f:
        f.seek((y * width + x) * 2)
        return struct.unpack("<H", f.read(2))[0]


@given(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))
def test_rgb565_packs_like_the_formula(rgb):
    img = Image.new("RGB", (3, 1), rgb)
    assert rgb565(img) == struct.pack("<HHH", *[pixel565(rgb)] * 3)


def test_known_colours():
    assert pixel565((255, 0, 0)) == 0xF800 and pixel565((0, 255, 0)) == 0x07E0 and pixel565((0, 0, 255)) == 0x001F
    assert pixel565((255, 255, 255)) == 0xFFFF and pixel565((0, 0, 0)) == 0


def test_case_screen_in_the_framebuffer_shows_the_qr(fb_file):
    path = fb_file(240, 240)
    fb = FramebufferDisplay(path, 240, 240)
    s = case_state()
    img = SmallScreen(fb.size).draw(s, online=True)
    fb.show(img)
    # find the QR on the panel from the framebuffer bytes: the first dark pixel row inside the body
    modules = s.qr.modules
    n = len(modules)
    dark = [(x, y) for y in range(24, 120) for x in range(240) if fb_pixel(path, 240, x, y) == 0]
    x0, y0 = min(x for x, _ in dark), min(y for _, y in dark)
    scale = (max(x for x, _ in dark) - x0 + 1) // n
    assert scale >= 2
    for r in range(n):
        for c in range(n):
            px = fb_pixel(path, 240, x0 + c * scale + scale // 2, y0 + r * scale + scale // 2)
            assert px == (0x0000 if modules[r][c] else 0xFFFF), (r, c)
    assert fb_pixel(path, 240, 2, 2) == pixel565(BLUE)  # title bar
    assert fb_pixel(path, 240, 240 - 13, 12) == pixel565(GREEN)  # online dot
    fb.show(SmallScreen(fb.size).draw(s, online=False))
    assert fb_pixel(path, 240, 240 - 13, 12) == pixel565(RED)
    fb.close()


def test_rotation_and_320x240(fb_file):
    path = fb_file(320, 240)
    fb = FramebufferDisplay(path, 320, 240, rotation=90)
    assert fb.size == (240, 320)  # drawn portrait, shown on a landscape panel
    img = Image.new("RGB", fb.size, (255, 255, 255))
    ImageDraw.Draw(img).rectangle((0, 0, 9, 9), fill=(255, 0, 0))  # top-left of the drawing
    fb.show(img)
    assert fb_pixel(path, 320, 315, 5) == 0xF800  # rotated clockwise: now top-right of the panel
    assert fb_pixel(path, 320, 5, 5) == 0xFFFF
    fb.close()


def test_wrong_size_framebuffer_is_refused(fb_file):
    with pytest.raises(OSError, match="needs 115200"):
        FramebufferDisplay(fb_file(240, 120), 240, 240)


def test_reasons_screen_highlights_the_cursor_and_labels_soft_keys():
    screen = SmallScreen((240, 240))
    s = case_state(phase=Phase.REASONS, level=Level.DISSATISFIED, selected=frozenset({"502"}))
    a = screen.draw(s, cursor=0)
    b = screen.draw(s, cursor=2)
    row = lambda i: 24 + 4 + 24 + i * 26 + 12  # noqa: E731 - middle of reason row i
    assert a.getpixel((230, row(0))) == BLUE and a.getpixel((230, row(2))) != BLUE
    assert b.getpixel((230, row(2))) == BLUE and b.getpixel((230, row(0))) != BLUE
    # the selected reason (502, row 1) has a filled box; the others an empty one
    assert a.getpixel((11, row(1) - 1)) != a.getpixel((11, row(3) - 1))


def test_every_screen_character_is_in_the_shipped_font(monkeypatch):
    drawn: list[str] = []
    original = ImageDraw.ImageDraw.text
    monkeypatch.setattr(ImageDraw.ImageDraw, "text", lambda self, xy, text, *a, **k: (drawn.append(text),
                                                                                      original(self, xy, text, *a, **k)))
    screen = SmallScreen((240, 240))
    for s in [State(staff=STAFF, window_name="一号窗口"), case_state(),
              case_state(phase=Phase.REASONS, level=Level.VERY_DISSATISFIED),
              case_state(phase=Phase.REASONS, level=Level.DISSATISFIED, catalog=None),
              case_state(phase=Phase.THANKS), case_state(phase=Phase.RATED_ELSEWHERE),
              case_state(phase=Phase.UNAVAILABLE), case_state(phase=Phase.UNAVAILABLE, qr=None)]:
        screen.draw(s, hint="请至少选择一项原因", notice="凭条打印失败，请扫描显示屏上的二维码评价")
    cmap = TTCollection(str(FONT_PATH)).fonts[0].getBestCmap()
    text = "".join(drawn) + "".join(SOFT_LABELS.values()) + "".join(r.zh for r in CATALOG.reasons)
    assert not {ch for ch in text if ord(ch) not in cmap and not ch.isspace()}


def test_worker_draws_each_new_state_and_a_notice():
    disp = MemoryDisplay(240, 240)
    w = ScreenWorker(disp, SmallScreen(disp.size), notice_s=60)
    w.state(case_state())
    wait_for(lambda: disp.frames >= 1, 5, "first frame")
    before = disp.frames
    w.notice("凭条打印失败，请扫描显示屏上的二维码评价")
    wait_for(lambda: disp.frames > before, 5, "notice frame")
    assert disp.frame.getpixel((120, 230)) == (230, 150, 0)  # the amber notice band at the bottom
    w.close()
