"""The citizen's screens end to end: real Kivy widgets under SDL offscreen, simulated touches, a real
Terminal on the real Mosquitto broker, and (where it matters) the real center ledger."""
from __future__ import annotations

import time

import pytest
from kivy.clock import Clock
from kivy.core.window import Window

from center.ledger import query
from device.machine import Phase, Tick
from devkit.waiting import wait_for
from protocol.values import LEVELS, Level
from ui.present import Screen

RATING_URL = "https://hcp.example.gov.cn/r?t=fixed-token-for-screens"


def ready(d, center, catalog=True, duty=True):
    """Online, with the catalog and the staff on duty, on the idle screen."""
    wait_for(lambda: d.t.online, what="terminal online")
    if catalog:
        center.catalog()
    if duty:
        center.duty()
    d.until(lambda: (not catalog or d.t.state.catalog is not None) and (not duty or d.t.state.staff is not None),
            what="catalog and duty")
    return d.on(Screen.IDLE)


def open_case(d, center, case_id: str, **extra):
    center.case(case_id, **extra)
    d.until(lambda: d.t.state.case is not None and d.t.state.case.id == case_id and d.t.state.phase == Phase.CASE,
            what=f"case {case_id}")
    return d.on(Screen.CASE)


def level_button(screen, level: Level):
    return next(b for b in screen.level_buttons if b.level == level)


def rate(d, center, case_id: str, level: Level, reasons=("505",)):
    """Rate a case with touches only; returns the thank-you screen."""
    s = open_case(d, center, case_id)
    d.tap(level_button(s, level))
    if level.is_bad:
        r = d.on(Screen.REASONS)
        for code in reasons:
            d.tap(r.toggles[code])
            d.until(lambda c=code: c in d.t.state.selected, what=f"reason {code} chosen")
            d.settle()
        d.tap(r.confirm)
    return d.on(Screen.THANKS)


# ---- rating ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("level", LEVELS, ids=[lv.value for lv in LEVELS])
def test_rate_every_level_with_one_touch_or_with_reasons(level, open_kiosk, center, ledger):
    d = open_kiosk()
    ready(d, center)
    case = open_case(d, center, "SH1001")
    texts = d.texts()
    assert "居住证办理" in texts and "工作人员：王芳（工号 0101）" in texts and "申请人：张*" in texts
    assert "扫码评价，可留言、上传图片" in texts
    assert case.qr.module_px >= 2 and case.qr.modules is d.t.state.qr.modules
    rate(d, center, "SH1001", level)
    rid = d.t.state.last_rating_id
    assert rid, "thank-you only after the rating was committed"
    rows = wait_for(lambda: query(ledger.db_path, "SELECT id, level, case_id, reasons, channel FROM ratings"),
                    what="ledger row")
    assert rows == [(rid, level.value, "SH1001", "505" if level.is_bad else None, "touch")]


def test_thank_you_is_identical_for_every_level(open_kiosk, center, tmp_path):
    d = open_kiosk(HCP_RATING_THANKS_S="1")
    ready(d, center)
    pictures, texts = [], []
    for i, level in enumerate(LEVELS):
        thanks = rate(d, center, f"SH20{i}", level)
        path = tmp_path / f"thanks-{level.value}.png"
        thanks.export_to_png(str(path))
        pictures.append(path.read_bytes())
        texts.append([(type(w).__name__, getattr(w, "text", None)) for w in thanks.walk()])
        center.case(f"SH20{i}", state="closed")
        d.on(Screen.IDLE)
    assert len(set(pictures)) == 1, "the thank-you screen must not reveal the level"
    assert all(t == texts[0] for t in texts)
    assert "谢谢您的评价！" in d.k.screen(Screen.THANKS).title.text


def test_a_bad_rating_cannot_be_committed_without_a_reason(open_kiosk, center, ledger):
    d = open_kiosk()
    ready(d, center)
    s = open_case(d, center, "SH3001")
    d.tap(level_button(s, Level.DISSATISFIED))
    r = d.on(Screen.REASONS)
    assert "请至少选择一项原因" in d.texts()
    assert r.confirm.disabled
    d.tap(r.confirm)  # nothing chosen: nothing happens
    d.tap(r.toggles["501"])
    d.until(lambda: d.t.state.selected == {"501"}, what="reason chosen")
    d.settle()
    d.tap(r.toggles["501"])  # changed mind: none chosen again
    d.until(lambda: not d.t.state.selected, what="reason cleared")
    d.settle()
    d.tap(r.confirm)
    d.frames(5)
    assert d.t.state.phase == Phase.REASONS and d.screen == Screen.REASONS
    assert d.t.outbox.counts().pending == 0 and not d.t.state.last_rating_id
    d.tap(r.toggles["503"])
    d.tap(r.toggles["506"])
    d.until(lambda: d.t.state.selected == {"503", "506"}, what="two reasons")
    d.settle()
    assert r.toggles["503"].text.startswith("✔") and not r.confirm.disabled
    d.tap(r.confirm)
    d.on(Screen.THANKS)
    rows = wait_for(lambda: query(ledger.db_path, "SELECT level, reasons, catalog FROM ratings"), what="row")
    assert rows == [("dissatisfied", "503,506", "2026.1")]


def test_back_from_the_reasons_returns_to_the_case(open_kiosk, center):
    d = open_kiosk()
    ready(d, center)
    s = open_case(d, center, "SH3002")
    d.tap(level_button(s, Level.VERY_DISSATISFIED))
    r = d.on(Screen.REASONS)
    d.tap(r.back)
    d.on(Screen.CASE, Phase.CASE)
    assert d.t.outbox.counts().pending == 0


def test_reasons_without_a_catalog_point_to_the_qr_code(open_kiosk, center):
    d = open_kiosk()
    ready(d, center, catalog=False)
    s = open_case(d, center, "SH3003")
    d.tap(level_button(s, Level.VERY_DISSATISFIED))
    r = d.on(Screen.REASONS)
    assert "原因列表尚未下发，请扫码评价" in d.texts() and r.confirm.disabled
    d.tap(r.back)
    d.on(Screen.CASE)


def test_many_reasons_are_paged_not_scrolled(open_kiosk, center):
    d = open_kiosk()
    ready(d, center, catalog=False)
    reasons = [{"code": str(600 + i), "zh": f"原因{i}", "en": f"Reason {i}"} for i in range(14)]
    center.publish(center.topics.catalog, {"v": 1, "type": "catalog", "center": center.center, "version": "big",
                                           "reasons": reasons})
    d.until(lambda: d.t.state.catalog is not None and d.t.state.catalog.version == "big", what="big catalog")
    s = open_case(d, center, "SH3004")
    d.tap(level_button(s, Level.DISSATISFIED))
    r = d.on(Screen.REASONS)
    assert len(r.toggles) == r.per_page < 14 and r.prev.disabled and not r.next.disabled
    d.tap(r.next)
    d.frames(2)
    assert r.page == 1 and r.hint.text.startswith("第 2/")
    d.tap(next(iter(r.toggles.values())))
    d.until(lambda: d.t.state.selected, what="a reason on page 2")
    d.settle()
    d.tap(r.confirm)
    d.on(Screen.THANKS)


def test_staff_rating_from_the_idle_screen(open_kiosk, center):
    d = open_kiosk(HCP_RATING_STAFF_RATING_WHEN_IDLE="true")  # off by default (issue 8 item 16)
    idle = ready(d, center)
    assert "请为工作人员评价" in d.texts()
    d.tap(level_button(idle, Level.SATISFIED))
    d.on(Screen.THANKS)
    assert d.t.state.kind == "staff" and d.t.state.last_rating_id


def test_after_the_case_screen_times_out_the_idle_screen_still_rates_the_open_case(open_kiosk, center):
    d = open_kiosk()  # idle staff ratings off (the default at case windows)
    ready(d, center)
    open_case(d, center, "SH4010")
    later = d.t.clock() + 10_000
    d.t.clock = lambda: later  # past the case screen's timeout; the case is still open at the center
    d.t.submit(Tick())
    idle = d.on(Screen.IDLE, Phase.IDLE)
    assert "请您对本次服务进行评价" in d.texts() and "请为工作人员评价" not in d.texts()
    d.tap(level_button(idle, Level.SATISFIED))
    d.on(Screen.THANKS)
    assert d.t.state.kind == "case" and d.t.state.case_rated


def test_idle_shows_window_staff_and_both_static_qr_codes(open_kiosk, center):
    d = open_kiosk()
    idle = ready(d, center)
    texts = d.texts()
    assert "一号窗口" in texts and "王芳" in texts and "工号 0101" in texts
    assert "人员评价" in texts and "大厅评价" in texts and "在线" in texts
    assert idle.staff_qr.module_px >= 2 and idle.hall_qr.module_px >= 2
    assert idle.avatar.initial.text == "王"


def test_no_staff_on_duty_no_staff_qr_and_no_level_buttons(open_kiosk, center):
    d = open_kiosk()
    ready(d, center, duty=False)
    d.settle()
    assert "暂无工作人员当班" in d.texts()
    assert "请为工作人员评价" not in d.texts() and "人员评价" not in d.texts()
    assert d.widget.levels.parent is None and d.widget.staff_qr_card.parent is None


def test_staff_photo_is_shown_when_the_duty_message_has_one(open_kiosk, center, tmp_path):
    from tests.ui.test_seams import PNG_1PX
    d = open_kiosk()
    url = "https://photos.example.gov.cn/S0101.png"
    d.k.photos.path(url).parent.mkdir(parents=True, exist_ok=True)
    d.k.photos.path(url).write_bytes(PNG_1PX)  # as if fetched earlier
    wait_for(lambda: d.t.online, what="online")
    center.duty({"id": "S0101", "name": "王芳", "number": "0101", "photo": url})
    d.until(lambda: d.t.state.staff is not None and d.t.state.staff.photo == url, what="duty with photo")
    idle = d.on(Screen.IDLE)
    assert idle.avatar.photo.texture is not None and idle.avatar.photo.opacity == 1
    assert idle.avatar.initial.opacity == 0


# ---- the other endings ----------------------------------------------------------------------------

def test_rated_on_the_phone_says_so_and_returns(open_kiosk, center):
    d = open_kiosk(HCP_RATING_THANKS_S="1")
    ready(d, center)
    open_case(d, center, "SH4001")
    center.case("SH4001", state="rated", rated_channel="qr")
    d.on(Screen.RATED_ELSEWHERE)
    assert "您已通过手机完成评价" in d.texts()
    d.on(Screen.IDLE, Phase.IDLE)
    assert d.t.outbox.counts().pending == 0


def test_case_closed_without_a_rating_returns_to_idle_and_reports_it(open_kiosk, center, ledger):
    d = open_kiosk()
    ready(d, center)
    open_case(d, center, "SH4002")
    center.case("SH4002", state="closed")
    d.on(Screen.IDLE, Phase.IDLE)
    rows = wait_for(lambda: query(ledger.db_path, "SELECT event, case_id FROM events"), what="unrated event")
    assert rows == [("unrated", "SH4002")]


def test_timeouts_return_to_idle(open_kiosk, center):
    """Reasons left alone go back to the case; a case left alone goes back to idle (core timeouts)."""
    d = open_kiosk(HCP_RATING_REASONS_TIMEOUT_S="10", HCP_RATING_CASE_TIMEOUT_S="10")
    ready(d, center)
    s = open_case(d, center, "SH4003")
    d.tap(level_button(s, Level.VERY_DISSATISFIED))
    d.on(Screen.REASONS)
    t0 = time.monotonic()
    d.on(Screen.CASE, Phase.CASE, timeout=30)
    d.on(Screen.IDLE, Phase.IDLE, timeout=30)
    assert time.monotonic() - t0 >= 10  # the configured timeouts, no earlier
    assert d.t.outbox.counts().pending == 0 and not d.t.state.last_rating_id  # nothing was rated


def test_thank_you_returns_to_idle_by_itself(open_kiosk, center):
    d = open_kiosk(HCP_RATING_THANKS_S="1")
    ready(d, center)
    rate(d, center, "SH4004", Level.VERY_SATISFIED)
    d.on(Screen.IDLE, Phase.IDLE)


FULL_OUTBOX = {"HCP_OUTBOX_CAPACITY": "10", "HCP_RATING_THANKS_S": "1", "HCP_RATING_REPEAT_GUARD_S": "0"}


def press_with_a_full_outbox(d, center, prefix: str) -> None:
    """Fill a 10-record outbox (no ledger: nothing is receipted), then rate one more case: UNAVAILABLE."""
    ready(d, center)
    for i in range(10):
        rate(d, center, f"{prefix}{i:02d}", Level.SATISFIED)
        d.on(Screen.IDLE)
    s = open_case(d, center, f"{prefix}99")
    d.tap(level_button(s, Level.SATISFIED))
    d.on(Screen.UNAVAILABLE)


def test_a_full_outbox_asks_the_citizen_to_scan_instead(open_kiosk, center):
    d = open_kiosk(**FULL_OUTBOX)
    press_with_a_full_outbox(d, center, "SH50")
    assert "暂时无法记录评价" in d.texts() and "请扫描二维码评价" in d.texts()
    assert d.widget.qr.module_px >= 2


# ---- status, pairing, maintenance -------------------------------------------------------------------

def test_offline_indicator_and_queued_ratings(open_kiosk, center, broker):
    d = open_kiosk(HCP_RATING_THANKS_S="1", HCP_RATING_STAFF_RATING_WHEN_IDLE="true")  # idle staff ratings: off by default
    idle = ready(d, center)
    assert idle.bar.status.text == "在线" and idle.bar.status.online
    broker.stop()
    d.until(lambda: not d.t.online, what="terminal offline")
    d.until(lambda: d.widget.bar.status.text.startswith("离线"), what="offline badge")
    assert not d.widget.bar.status.online and d.widget.bar.status.bg_hex == "#FFD34D"
    d.tap(level_button(d.widget, Level.VERY_SATISFIED))  # rating offline still works
    d.on(Screen.THANKS)
    d.on(Screen.IDLE)
    d.until(lambda: "待送 1" in d.widget.bar.status.text, timeout=10, what="queued count")
    broker.start()
    d.until(lambda: d.t.online, timeout=30, what="back online")
    d.until(lambda: d.widget.bar.status.text.startswith("在线"), what="online badge")


def test_unpaired_screen_shows_code_qr_and_device_id(open_kiosk):
    from ui.present import PairingInfo
    d = open_kiosk("dev-7f3a", pairing=PairingInfo("482913", "https://pair.example.gov.cn/p/482913"))
    s = d.on(Screen.UNPAIRED)
    texts = d.texts()
    assert "请联系工作人员配对" in texts and "482 913" in texts and "设备编号：dev-7f3a" in texts
    assert s.qr.module_px >= 2
    d.k.pairing = None  # provisioning paired it
    d.k.render()
    d.on(Screen.IDLE)


def test_unpaired_screen_follows_the_pairing_state(open_kiosk):
    from types import SimpleNamespace

    from ui.present import PairingInfo
    d = open_kiosk("dev-7f3b")
    d.on(Screen.IDLE)
    # the shape of the core's pairing object (provisioning): state, code, qr_url
    d.k.set_pairing(PairingInfo.of(SimpleNamespace(state="connecting", code="", qr_url="")))
    s = d.on(Screen.UNPAIRED)
    assert "正在连接服务器，请稍候" in d.texts() and s.qr.module_px == 0 and not s.code.text
    d.k.set_pairing(PairingInfo.of(SimpleNamespace(state="code", code="771204", qr_url="https://p.example/x")))
    d.until(lambda: s.code.text == "771 204", what="code shown")
    assert "请联系工作人员配对" in d.texts()
    d.k.set_pairing(PairingInfo.of(SimpleNamespace(state="revoked", code="", qr_url="")))
    d.until(lambda: "本终端已停用，请联系工作人员" in d.texts(), what="revoked")
    d.k.set_pairing(PairingInfo.of(None))
    d.on(Screen.IDLE)


def corner(d):
    return d.k.geo.px(5), Window.height - d.k.geo.bar_height / 2


def gesture(d):
    for _ in range(5):
        d.tap_at(*corner(d))


def enter(d, pin: str):
    pad = d.widget.pad
    for ch in pin:
        d.tap(next(k for k in pad.keys if k.text == ch))
    d.tap(pad.keys[-1])  # OK


def test_maintenance_needs_the_gesture_and_the_right_pin(open_kiosk, center):
    from ui.hooks import MaintenanceHooks
    hooks = MaintenanceHooks()
    printed = []
    hooks.register("print_test_page", lambda: printed.append(1) or "ok")
    d = open_kiosk("dev-m1", hooks=hooks)
    ready(d, center)
    for _ in range(4):
        d.tap_at(*corner(d))
    assert d.screen == Screen.IDLE  # four taps are not the gesture
    d.tap_at(*corner(d))
    d.on(Screen.PIN)
    assert "请输入维护密码" in d.texts()
    enter(d, "1357")
    d.on(Screen.PIN)
    assert "密码错误" in d.texts()
    enter(d, "2468")
    m = d.on(Screen.MAINTENANCE)
    texts = d.texts()
    from device import __version__
    for expected in ("dev-m1", __version__, "已连接 127.0.0.1", "0 条（容量 100000）", "eth0 up 192.0.2.10"):
        assert expected in texts, expected
    assert m.actions["test_keys"].disabled and m.actions["re_enrol"].disabled
    assert not m.actions["print_test_page"].disabled
    d.tap(m.actions["print_test_page"])
    assert printed == [1] and "已执行：打印测试页" in d.texts()
    d.tap(m.exit)
    d.on(Screen.IDLE)


def test_maintenance_locks_after_repeated_wrong_pins(open_kiosk, center):
    d = open_kiosk()
    ready(d, center)
    gesture(d)
    d.on(Screen.PIN)
    for _ in range(5):
        enter(d, "0000")
    assert "错误次数过多" in d.texts() and all(k.disabled for k in d.widget.pad.keys)
    enter(d, "2468")
    assert d.screen == Screen.PIN
    d.tap(d.widget.cancel)
    d.on(Screen.IDLE)


def test_no_pin_configured_means_no_maintenance(open_kiosk, center):
    d = open_kiosk(HCP_UI_MAINTENANCE_PIN="")
    ready(d, center)
    gesture(d)
    d.frames(3)
    assert d.screen == Screen.IDLE


def test_a_case_arriving_does_not_close_maintenance_but_the_core_keeps_working(open_kiosk, center):
    d = open_kiosk()
    ready(d, center)
    gesture(d)
    d.on(Screen.PIN)
    center.case("SH6001")
    d.until(lambda: d.t.state.phase == Phase.CASE, what="case in the core")
    d.frames(3)
    assert d.screen == Screen.PIN
    d.tap(d.widget.cancel)
    d.on(Screen.CASE)


# ---- robustness ---------------------------------------------------------------------------------

def test_a_ui_exception_never_leaves_a_dead_screen(open_kiosk, center, monkeypatch):
    from ui import screens
    d = open_kiosk()
    ready(d, center)

    def broken(self, state):
        raise RuntimeError("a bug in the case screen")

    monkeypatch.setattr(screens.CaseScreen, "update", broken)
    center.case("SH7001")
    d.until(lambda: d.t.state.phase == Phase.CASE, what="case in the core")
    d.until(lambda: d.k.errors >= 1, what="error noticed")
    d.frames(3)
    assert d.screen == Screen.IDLE and d.widget.parent is d.k.stage  # recovered to a live idle screen
    monkeypatch.undo()
    d.k.render()
    s = d.on(Screen.CASE)  # the next render works again
    d.tap(level_button(s, Level.SATISFIED))
    d.on(Screen.THANKS)


def test_when_even_idle_fails_the_fallback_page_shows_and_rendering_is_retried(open_kiosk, center, monkeypatch):
    from ui import screens
    d = open_kiosk()
    ready(d, center)
    monkeypatch.setattr(screens.IdleScreen, "update", lambda self, state: 1 / 0)
    d.k.relayout()
    assert d.screen == Screen.FALLBACK and "请稍候" in d.texts()
    monkeypatch.undo()
    d.until(lambda: d.screen == Screen.IDLE, timeout=15, what="retry after the fallback")


def test_exception_guard_keeps_the_loop_going_but_gives_up_on_a_storm(open_kiosk, center):
    from kivy.base import ExceptionManager
    from ui.app import UiGuard
    d = open_kiosk()
    ready(d, center)
    guard = UiGuard(d.k, limit=3, per_s=60)
    assert guard.handle_exception(RuntimeError("x")) == ExceptionManager.PASS
    d.until(lambda: d.k.errors == 1, what="recovery ran")
    assert d.screen == Screen.IDLE
    assert guard.handle_exception(KeyboardInterrupt()) == ExceptionManager.RAISE
    assert [guard.handle_exception(RuntimeError("x")) for _ in range(3)][-1] == ExceptionManager.RAISE


def test_double_tap_guard_swallows_the_second_finger_on_the_next_screen(open_kiosk, center):
    d = open_kiosk(HCP_UI_TOUCH_GUARD_MS="400")
    now = [1000.0]  # the guard's clock moves only when the test says (a slow machine cannot age a touch)
    d.k.clock = lambda: now[0]
    ready(d, center)
    s = open_case(d, center, "SH7002")
    d.tap(level_button(s, Level.DISSATISFIED))
    d.frames(3)
    assert d.t.state.phase == Phase.CASE  # too soon after the case screen came: swallowed
    now[0] += 0.45
    d.tap(level_button(s, Level.DISSATISFIED))
    r = d.on(Screen.REASONS)
    d.tap(r.toggles["501"])  # same instant as the screen change: a double tap, ignored
    d.frames(3)
    assert not d.t.state.selected
    now[0] += 0.45
    d.tap(r.toggles["501"])
    d.until(lambda: d.t.state.selected == {"501"}, what="deliberate tap accepted")


def test_nothing_redraws_while_nothing_changes(open_kiosk, center):
    d = open_kiosk(HCP_RATING_STAFF_RATING_WHEN_IDLE="true")  # idle staff ratings: off by default
    ready(d, center)
    d.settle(5)
    flips = []

    def count(*_):
        flips.append(1)

    Window.bind(on_flip=count)
    try:
        for _ in range(60):
            d.frames(1)
        assert flips == [], f"{len(flips)} frames drawn while idle"
        d.tap(level_button(d.widget, Level.SATISFIED))  # a change draws (the check can fail)
        d.on(Screen.THANKS)
        assert flips
    finally:
        Window.unbind(on_flip=count)


def test_frame_rate_drops_when_idle_and_comes_back_on_activity(open_kiosk, center):
    d = open_kiosk(HCP_UI_IDLE_AFTER_S="1", HCP_UI_IDLE_FPS="5")
    ready(d, center)
    d.until(lambda: Clock._max_fps == 5, timeout=10, what="idle frame rate")
    center.case("SH7003")
    d.on(Screen.CASE)
    assert Clock._max_fps == d.k.active_fps
    d.until(lambda: Clock._max_fps == d.k.active_fps, what="active")
    time.sleep(1.2)
    d.frames(2)
    assert Clock._max_fps == d.k.active_fps  # never lowered on the case screen


def test_news_from_the_core_is_drawn_at_once_even_at_the_idle_frame_rate(open_kiosk, center):
    d = open_kiosk(HCP_UI_IDLE_AFTER_S="1", HCP_UI_IDLE_FPS="1")
    ready(d, center)
    d.until(lambda: Clock._max_fps == 1, timeout=10, what="one frame a second")
    d.frames(2)
    flips: list[float] = []
    rendered: list[float] = []

    def flipped(*_):
        flips.append(time.monotonic())

    Window.bind(on_flip=flipped)
    d.k.on_rendered(lambda k: rendered.append(time.monotonic()) if k.shown == Screen.CASE else None)
    try:
        center.case("SH7010")
        d.until(lambda: rendered and any(f > rendered[0] for f in flips), what="case screen drawn")
        drawn = next(f for f in flips if f > rendered[0])
        assert drawn - rendered[0] < 0.5, "drawn only at the end of the one-second idle frame"
    finally:
        Window.unbind(on_flip=flipped)


def test_english_ui(open_kiosk, center):
    d = open_kiosk(HCP_UI_LANGUAGE="en")
    ready(d, center)
    s = open_case(d, center, "SH8001")
    assert "Please rate this service" in d.texts() and "Applicant: 张*" in d.texts()
    d.tap(level_button(s, Level.DISSATISFIED))
    d.on(Screen.REASONS)
    assert "Long wait" in d.texts() and "Submit" in d.texts()


def test_voice_prompts_follow_the_screens(open_kiosk, center):
    class Recorder:
        def __init__(self):
            self.said = []

        def say(self, prompt):
            self.said.append(prompt)

        def stop(self):
            pass

    voice = Recorder()
    d = open_kiosk(voice=voice)
    ready(d, center)
    rate(d, center, "SH8002", Level.VERY_DISSATISFIED)
    assert voice.said == ["case.prompt", "reasons.title", "thanks.title"]
