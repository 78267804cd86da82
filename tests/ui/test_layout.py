"""Every screen on the three panels, measured as rendered: touch targets ≥ 15 mm, text at least the
minimum size and fully shown, no CJK character left alone on a line, every label ≥ 4.5:1 against what
is behind it; the QR code on screen is the QR code in the state, the case's at least 35 mm wide. The
800×480 renders go to a temporary directory, to docs/screens/ with `make screens` (the README shows them)."""
from __future__ import annotations

import dataclasses
import os

import pytest
from kivy.core.text import Label as CoreLabel
from kivy.core.text.markup import MarkupLabel
from kivy.core.window import Window
from kivy.uix.behaviors import ButtonBehavior
from PIL import Image

from device.machine import Phase
from protocol.values import Level
from tests import screenshots
from tests.ui.conftest import visible as shown
from tests.ui.test_kiosk import RATING_URL, level_button, open_case, ready
from ui.present import PairingInfo, Screen
from ui.theme import MIN_CONTRAST, MIN_TARGET_MM, MIN_TEXT_MM, PANELS, contrast, hex_rgb

EXPORT_PANEL = "800x480"
MIN_CASE_QR_MM = 35.0  # 适老化: the case's dynamic QR, modules only (without the quiet zone)
PUNCTUATION = set("，、。：；！？（）「」《》…—·,.:;!?()[] ★☆✔●")
EXTRA_EXPORTS = {Screen.CASE}  # also exported at the other sizes


def background(widget) -> str:
    p = widget
    while p is not None and p is not Window:
        bg = getattr(p, "bg_hex", "")
        if bg:
            return bg
        p = p.parent
    return "#000000"


def needed_size(label) -> tuple[float, float]:
    """What the label's text needs at its width (Kivy clips silently, so measure it again)."""
    cls = MarkupLabel if label.markup else CoreLabel
    width = label.text_size[0] if label.text_size[0] else None
    core = cls(text=label.text, font_size=label.font_size, font_name=label.font_name,
               text_size=(width, None), halign=label.halign)
    core.refresh()
    return core.content_width, core.content_height


def rendered_lines(label) -> list[str]:
    """The lines Kivy laid the label out in (after wrapping)."""
    label.texture_update()
    return ["".join(word.text for word in line.words) for line in label._label._cached_lines]


def orphans(label) -> list[str]:
    """Lines of a wrapped label that hold one lone CJK character (punctuation aside), e.g. "片"."""
    lines = rendered_lines(label)
    if len(lines) < 2:
        return []
    alone = []
    for line in lines:
        chars = [c for c in line if c not in PUNCTUATION]
        if len(chars) == 1 and "\u4e00" <= chars[0] <= "\u9fff":
            alone.append(line)
    return alone


def check_screen(d, name: str) -> list[str]:
    """All the rules on the screen that is up; returns the problems found."""
    g = d.k.geo
    problems = []
    root = d.widget
    for w in root.walk():
        if not shown(w):
            continue
        if isinstance(w, ButtonBehavior):
            if g.mm(min(w.width, w.height)) < MIN_TARGET_MM - 0.05:
                problems.append(f"{name}: button {w.text!r} is {g.mm(w.width):.1f}×{g.mm(w.height):.1f} mm")
        if hasattr(w, "texture_size") and hasattr(w, "font_size") and w.text.strip():
            if g.mm(w.font_size) < MIN_TEXT_MM - 0.05:
                problems.append(f"{name}: {w.text!r} at {g.mm(w.font_size):.1f} mm")
            colour = (w.disabled_color if w.disabled else w.color)[:3]
            ratio = contrast(tuple(colour), hex_rgb(background(w)))
            if ratio < MIN_CONTRAST:
                problems.append(f"{name}: {w.text!r} contrast {ratio:.2f}")
            if not w.shorten and w.text_size[0]:
                problems += [f"{name}: {w.text!r} leaves {line!r} alone on a line" for line in orphans(w)]
                need_w, need_h = needed_size(w)
                if need_h > w.height + 1 or need_w > w.width + 1:
                    problems.append(f"{name}: {w.text!r} needs {need_w:.0f}×{need_h:.0f} px, has "
                                    f"{w.width:.0f}×{w.height:.0f}")
            elif w.shorten and root.name != Screen.MAINTENANCE:
                if CoreLabel(text=w.text, font_size=w.font_size, font_name=w.font_name).get_extents(w.text)[0] \
                        > w.width:
                    problems.append(f"{name}: {w.text!r} is cut short")
    return problems


def qr_matches(d, qr_view, modules, png) -> None:
    """Sample the rendered pixels at every module centre: the picture is the state's code, not mirrored."""
    d.k.stage.export_to_png(str(png))  # the whole stage, read back
    img = Image.open(png).convert("L")
    x, y, w, h = qr_view.qr_rect
    n = len(modules)
    quiet = 4
    module = w / (n + 2 * quiet)
    top = img.height - (y + h)  # PNG rows start at the top
    for r in range(n):
        for c in range(n):
            px = img.getpixel((int(x + (c + quiet + 0.5) * module), int(top + (r + quiet + 0.5) * module)))
            assert (px < 128) == modules[r][c], f"module {r},{c}"


@pytest.mark.parametrize("panel", PANELS)
def test_every_screen_meets_the_rules_on_every_panel(panel, open_kiosk, center, tmp_path):
    docs_before = {p.name: p.stat().st_mtime_ns for p in screenshots.DOCS.glob("*.png")}
    w, h, diag = PANELS[panel]
    Window.size = (w, h)
    d = open_kiosk("dev-7f3a", HCP_UI_PANEL_DIAGONAL_IN=str(diag), HCP_RATING_THANKS_S="1")
    d.k.clock_text = lambda: "09:30"  # stable pictures
    assert (d.k.geo.width, d.k.geo.height) == (w, h)
    problems: list[str] = []
    seen = []

    def visit(name: str, from_core: bool = True):
        if from_core:
            d.settle()
        d.frames(3)
        problems.extend(check_screen(d, f"{panel} {name}"))
        seen.append(d.screen)
        if panel == EXPORT_PANEL:
            d.export(name)
        elif d.screen in EXTRA_EXPORTS:
            d.export(f"{name}-{panel}")

    idle = ready(d, center)
    visit("idle")
    s = open_case(d, center, "SH20261126000042", rating_url=RATING_URL)
    qr_matches(d, s.qr, d.t.state.qr.modules, tmp_path / "qr.png")
    visit("case")
    d.tap(level_button(s, Level.VERY_DISSATISFIED))
    r = d.on(Screen.REASONS)
    for code in ("501", "505"):
        d.tap(r.toggles[code])
        d.until(lambda c=code: c in d.t.state.selected, what="reason chosen")
    visit("reasons")
    d.tap(r.confirm)
    d.on(Screen.THANKS)
    visit("thanks")
    d.on(Screen.IDLE)
    center.case("SH20261126000042", state="closed")
    open_case(d, center, "SH20261126000043", rating_url=RATING_URL)
    center.case("SH20261126000043", state="rated")
    d.on(Screen.RATED_ELSEWHERE)
    visit("rated_elsewhere")
    d.on(Screen.IDLE)
    # The rating could not be stored (a full outbox, see test_kiosk): shown from a state, for its looks.
    open_case(d, center, "SH20261126000044", rating_url=RATING_URL)
    d.k.state = dataclasses.replace(d.t.state, phase=Phase.UNAVAILABLE)
    d.k.render()
    visit("unavailable", from_core=False)
    d.k.state = d.t.state
    d.k.render()
    d.on(Screen.CASE)
    center.case("SH20261126000044", state="closed")
    d.on(Screen.IDLE)
    for _ in range(5):
        d.tap_at(d.k.geo.px(5), Window.height - d.k.geo.bar_height / 2)
    d.on(Screen.PIN)
    d.tap(d.widget.pad.keys[0])
    visit("maintenance_pin")
    d.tap(d.widget.pad.keys[9])  # delete
    for ch in "2468":
        d.tap(next(k for k in d.widget.pad.keys if k.text == ch))
    d.tap(d.widget.pad.keys[-1])
    d.on(Screen.MAINTENANCE)
    rows, port = d.k.maintenance.rows, d.t.cfg.mqtt.port  # the test broker's port changes every run:
    d.k.maintenance.rows = lambda: [(k, v.replace(f":{port}", ":1883")) for k, v in rows()]  # stable pictures
    d.k.render()
    visit("maintenance")
    d.tap(d.widget.exit)
    d.on(Screen.IDLE)
    d.k.pairing = PairingInfo("482913", "https://pair.example.gov.cn/p/482913")
    d.k.render()
    d.on(Screen.UNPAIRED)
    visit("unpaired", from_core=False)
    assert not problems, "\n".join(problems)
    if not os.environ.get(screenshots.ENV):  # `make test` leaves the tracked pictures alone
        assert {p.name: p.stat().st_mtime_ns for p in screenshots.DOCS.glob("*.png")} == docs_before
        assert not d.export("probe").is_relative_to(screenshots.DOCS.parents[1])
    assert set(seen) == {Screen.IDLE, Screen.CASE, Screen.REASONS, Screen.THANKS, Screen.RATED_ELSEWHERE,
                         Screen.UNAVAILABLE, Screen.PIN, Screen.MAINTENANCE, Screen.UNPAIRED}
    assert idle is not None


def test_the_rules_check_can_fail(open_kiosk, center):
    """A deliberately tiny button, a low-contrast label and a lone character on a line are caught."""
    from kivy.uix.label import Label

    from ui.theme import PALETTE
    from ui.widgets import BigButton, Text, text_width
    d = open_kiosk()
    ready(d, center)
    g = d.k.geo
    box = d.widget.children[0]
    tiny = BigButton(g, "x", size_hint=(None, None), size=(g.px(10), g.px(10)))
    faint = Text(g, "faint", color="#C8CCD2")
    faint.bg_hex = PALETTE.page
    text, font = "请至少选择一项原因", g.font("caption")  # room for eight characters: "因" alone (plain Kivy)
    lone = Label(text=text, font_size=font, color=(0, 0, 0, 1), size_hint=(None, None),
                 size=(text_width(text[:8], font) + 2, font * 3), text_size=(text_width(text[:8], font) + 2, None))
    for w in (tiny, faint, lone):
        box.add_widget(w)
    d.frames(3)
    problems = check_screen(d, "idle")
    assert any("button 'x'" in p for p in problems) and any("'faint' contrast" in p for p in problems)
    assert any("leaves '因' alone" in p for p in problems), problems
    for w in (tiny, faint, lone):
        box.remove_widget(w)


def test_balanced_text_leaves_no_character_alone(open_kiosk, center):
    """The same text in the kiosk's own Text widget comes out as two even lines."""
    from ui.widgets import Text, text_width
    d = open_kiosk()
    ready(d, center)
    g = d.k.geo
    text, font = "请至少选择一项原因", g.font("caption")
    width = text_width(text[:8], font) + 2
    label = Text(g, text, role="caption", lines=2, size_hint_x=None, width=width)
    d.widget.children[0].add_widget(label)
    d.frames(3)
    assert rendered_lines(label) == ["请至少选择", "一项原因"]
    d.widget.children[0].remove_widget(label)


@pytest.mark.parametrize("panel", PANELS)
def test_case_qr_is_at_least_35_mm_wide_on_every_panel(panel, open_kiosk, center, tmp_path):
    """A token signed as a real Pi signs it (its device id, a long case id: QR version 8, 49 modules)."""
    w, h, diag = PANELS[panel]
    Window.size = (w, h)
    d = open_kiosk("rpi-1000000a3f9c2b7e", HCP_UI_PANEL_DIAGONAL_IN=str(diag), HCP_QR_KEY="5a" * 32,
                   HCP_QR_KEY_ID="k2026")
    ready(d, center)
    s = open_case(d, center, "SH20261126000042")
    modules = d.t.state.qr.modules
    assert len(modules) >= 49 and s.qr.modules is modules
    code_mm = d.k.geo.mm(s.qr.module_px * len(modules))
    assert code_mm >= MIN_CASE_QR_MM, f"{panel}: the case QR is {code_mm:.1f} mm wide"
    qr_matches(d, s.qr, modules, tmp_path / "qr.png")
    assert not check_screen(d, f"{panel} case")
