"""`drivers.attach` around a real (offline) Terminal: keys rate, reasons by soft keys or touch, wake press,
print key and print failures, status LED, stuck keys, missing parts."""
from __future__ import annotations

import pytest

from device.machine import CaseOpened, CatalogChanged, DutyChanged, Phase, ReasonsConfirmed, ReasonToggled
from devkit.clock import FakeClock
from devkit.waiting import wait_for
from drivers import attach
from drivers.feedback import Status
from drivers.rig import Rig
from tests.drivers.conftest import CATALOG, STAFF, case_state, local, make_qr


def press(factory, clock, pin: int, hold: float = 0.1) -> None:
    factory.pin(pin).drive_low()
    clock.advance(hold)
    factory.pin(pin).drive_high()
    clock.advance(1.0)


@pytest.fixture
def rig_term(offline_terminal, factory, clock):
    """`rig_term(profile, **HCP_env)` → (terminal, attachment) with mock pins and a fake key clock."""
    made = []

    def make(profile: str = "buttons-only-box", local_now=lambda: local(10, 0, 1), wall=None, **env):
        t = offline_terminal(**env)
        t.submit(DutyChanged(STAFF, "一号窗口"))
        t.submit(CatalogChanged(CATALOG))
        extra = {"clock": wall} if wall is not None else {}
        a = attach(t, profile, simulate=True, pin_factory=factory, key_clock=clock, local_now=local_now, tick_s=0.05,
                   **extra)
        made.append(a)
        wait_for(lambda: t.state.catalog is not None, 5, "catalog in the machine")
        return t, a

    yield make
    for a in made:
        a.close()


def handled(t) -> None:
    """Returns once the core has handled every event submitted before (one queue, one thread): a barrier."""
    window = t.state.window_name
    t.submit(DutyChanged(t.state.staff, "barrier"))
    wait_for(lambda: t.state.window_name == "barrier", 5, "events handled")
    t.submit(DutyChanged(t.state.staff, window))


def open_case(t, case_id: str) -> None:
    t.submit(CaseOpened(case_state(case_id).case, qr=make_qr()))
    wait_for(lambda: t.state.phase == Phase.CASE and t.state.case.id == case_id, 5, "case shown")


def test_no_profile_no_drivers(offline_terminal):
    assert attach(offline_terminal()) is None


def test_a_key_press_rates_the_case(rig_term, factory, clock):
    t, a = rig_term()
    pins = a.profile.keys.pins
    open_case(t, "K1")
    press(factory, clock, pins["satisfied"])
    wait_for(lambda: t.state.phase == Phase.THANKS, 5, "thanks")
    assert t.state.last_rating_id and t.outbox.counts().pending >= 1
    assert t.state.channel.value == "keys" and t.state.level.value == "satisfied"
    press(factory, clock, pins["very_satisfied"])  # one case, one rating: ignored in THANKS
    handled(t)
    assert t.outbox.counts().pending == 1


def test_buttons_only_box_chooses_reasons_with_soft_keys(rig_term, factory, clock):
    t, a = rig_term("buttons-only-box")
    pins = a.profile.keys.pins
    open_case(t, "K2")
    press(factory, clock, pins["very_dissatisfied"])
    wait_for(lambda: t.state.phase == Phase.REASONS, 5, "reasons")
    frames = a.rig.display.frames
    press(factory, clock, pins["satisfied"])  # 下移 → 502
    wait_for(lambda: a.rig.display.frames > frames, 5, "cursor redrawn")
    assert a.cursor.get()[0] == 1
    press(factory, clock, pins["basically_satisfied"])  # 选择
    wait_for(lambda: t.state.selected == {"502"}, 5, "502 selected")
    press(factory, clock, pins["dissatisfied"])  # 提交
    wait_for(lambda: t.state.phase == Phase.THANKS, 5, "thanks")
    assert t.outbox.counts().pending == 1


def test_touch_box_keys_wait_for_the_screen_in_reasons(rig_term, factory, clock):
    t, a = rig_term("official-7in-touch")
    pins = a.profile.keys.pins
    open_case(t, "K3")
    press(factory, clock, pins["dissatisfied"])
    wait_for(lambda: t.state.phase == Phase.REASONS, 5, "reasons")
    for key in ("satisfied", "basically_satisfied", "dissatisfied"):
        press(factory, clock, pins[key])
    handled(t)
    assert t.state.phase == Phase.REASONS and not t.state.selected
    t.submit(ReasonToggled("505"))  # the touch screen asks
    t.submit(ReasonsConfirmed())
    wait_for(lambda: t.state.phase == Phase.THANKS, 5, "thanks")


def test_idle_key_rates_the_staff_on_duty(rig_term, factory, clock):
    t, a = rig_term(HCP_RATING_STAFF_RATING_WHEN_IDLE="true")  # off by default (issue 8 item 16)
    press(factory, clock, a.profile.keys.pins["very_satisfied"])
    wait_for(lambda: t.state.phase == Phase.THANKS and t.state.kind == "staff", 5, "staff rating")


def test_idle_key_is_ignored_when_staff_ratings_are_off(rig_term, factory, clock):
    t, a = rig_term(HCP_RATING_STAFF_RATING_WHEN_IDLE="false")
    press(factory, clock, a.profile.keys.pins["very_satisfied"])
    open_case(t, "K9")  # the core has handled the press before this event
    assert t.outbox.counts().pending == 0 and t.state.phase == Phase.CASE


def test_check_names_the_wrong_key(offline_terminal):
    from drivers import check
    from drivers.hours import HoursError
    from drivers.profile import ProfileError
    cfg = offline_terminal(HCP_HARDWARE_PROFILE="buttons-only-box").cfg
    check(cfg.hardware)
    with pytest.raises(ProfileError, match="no shipped profile 'nope'"):
        check(cfg.hardware.__class__(profile="nope"))
    with pytest.raises(HoursError, match="hardware.opening_hours"):
        check(cfg.hardware.__class__(opening_hours="mon 18:00-09:00"))


def test_first_press_on_a_dark_screen_only_wakes_it(rig_term, factory, clock):
    wall = FakeClock()
    t, a = rig_term(local_now=lambda: local(22, 0, 1), wall=wall, HCP_HARDWARE_DIM_AFTER_S="10", HCP_RATING_STAFF_RATING_WHEN_IDLE="true",
                    HCP_HARDWARE_OPENING_HOURS="mon-fri 08:30-17:30")
    wall.advance(3600)  # an hour after the last activity, at night
    wait_for(lambda: a.keeper.is_dark and a.rig.backlight.percent == 0, 5, "backlight off")
    press(factory, clock, a.profile.keys.pins["very_satisfied"])
    assert a.keeper.mode == "bright"
    handled(t)
    assert t.outbox.counts().pending == 0  # the wake press was not taken as a rating
    press(factory, clock, a.profile.keys.pins["very_satisfied"])
    wait_for(lambda: t.state.phase == Phase.THANKS, 5, "the second press rates")


def test_print_key_prints_the_slip_and_a_failure_is_shown_and_raised(rig_term, factory, clock):
    t, a = rig_term("buttons-only-box")
    results = []
    a.on_print(results.append)
    open_case(t, "K4")
    a.rig.printer.sim_status = a.rig.printer.sim_status.__class__(known=True, paper_out=True)
    press(factory, clock, a.profile.keys.pins["print_slip"])
    wait_for(lambda: results, 5, "print result")
    assert not results[0].ok and results[0].message == "凭条打印失败，请扫描显示屏上的二维码评价"
    wait_for(lambda: "printer_paper_out" in t.alarms.active(), 5, "alarm")
    wait_for(lambda: a.rig.display.frame is not None and a.rig.display.frame.getpixel((120, 230)) == (230, 150, 0),
             5, "notice on the small display")
    a.rig.printer.sim_status = a.rig.printer.sim_status.__class__()
    assert a.print_slip() is None
    wait_for(lambda: len(results) == 2, 5, "second print")
    assert results[1].ok
    assert "printer_paper_out" not in t.alarms.active()
    assert b"\x1dv0" in a.rig.printer.sim_device.output


def test_print_without_a_case_is_refused_politely(rig_term):
    t, a = rig_term()
    result = a.print_slip()
    assert result is not None and result.reason == "no_case"


def test_status_led_follows_the_terminal(rig_term):
    t, a = rig_term()
    wait_for(lambda: a.rig.status.status == Status.OFFLINE, 5, "offline (no broker)")
    t.alarms.raise_("disk_write_failed", "test")
    wait_for(lambda: a.rig.status.status == Status.FAULT, 5, "fault")
    t.alarms.clear("disk_write_failed")
    wait_for(lambda: a.rig.status.status == Status.OFFLINE, 5, "offline again")


def test_stuck_key_raises_and_clears_an_alarm(rig_term, factory, clock):
    t, a = rig_term()
    pin = factory.pin(a.profile.keys.pins["satisfied"])
    pin.drive_low()
    clock.advance(a.profile.keys.stuck_s + 1)
    wait_for(lambda: "key_stuck" in t.alarms.active(), 5, "stuck alarm")
    pin.drive_high()
    wait_for(lambda: "key_stuck" not in t.alarms.active(), 5, "cleared")
    handled(t)
    assert t.outbox.counts().pending == 0  # the held press was rejected, not taken as a rating


def test_missing_parts_are_alarms_and_the_rest_runs(offline_terminal, factory, clock, tmp_path):
    t = offline_terminal(HCP_RATING_STAFF_RATING_WHEN_IDLE="true")  # idle staff ratings: off by default
    rig = Rig("buttons-only-box", simulate=False, pin_factory=factory, sysfs_root=str(tmp_path / "nosys"),
              key_clock=clock)
    assert set(rig.problems) == {"backlight", "display"}
    a = attach(t, rig=rig, tick_s=0.05)
    try:
        assert {"hardware_backlight", "hardware_display"} <= set(t.alarms.active())
        t.submit(DutyChanged(STAFF, "一号窗口"))
        wait_for(lambda: t.state.staff is not None, 5, "duty")
        press(factory, clock, rig.profile.keys.pins["satisfied"])
        wait_for(lambda: t.state.phase == Phase.THANKS, 5, "keys still rate")
    finally:
        a.close()


def test_close_releases_the_pins(offline_terminal, factory, clock):
    t = offline_terminal()
    for _ in range(2):
        a = attach(t, "official-7in-touch", simulate=True, pin_factory=factory, key_clock=clock)
        a.close()
