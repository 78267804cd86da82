"""Key press → rating committed → delivered and receipted through the real broker and ledger."""
from __future__ import annotations

from center.ledger import query
from device.machine import Phase
from devkit.waiting import wait_for
from drivers import attach


def press(factory, clock, pin: int) -> None:
    factory.pin(pin).drive_low()
    clock.advance(0.12)
    factory.pin(pin).drive_high()
    clock.advance(1.0)


def test_key_press_to_receipt(broker, ledger, center, make_terminal, factory, clock):
    t = make_terminal()
    a = attach(t, "official-7in-touch", simulate=True, pin_factory=factory, key_clock=clock)
    try:
        wait_for(lambda: t.online, what="terminal online")
        center.catalog()
        center.duty()
        center.case("SH1001")
        wait_for(lambda: t.state.phase == Phase.CASE and t.state.case.id == "SH1001", what="case shown")
        press(factory, clock, a.profile.keys.pins["basically_satisfied"])
        wait_for(lambda: t.state.phase == Phase.THANKS, what="thank-you")
        rid = t.state.last_rating_id
        rows = wait_for(lambda: query(ledger.db_path, "SELECT id, level, channel, case_id, staff, applicant, first "
                                                      "FROM ratings"), what="ledger row")
        assert rows == [(rid, "basically_satisfied", "keys", "SH1001", "S0101", "ap_0123456789abcdef", 1)]
        wait_for(lambda: t.outbox.counts().pending == 0, what="receipt empties the outbox")
    finally:
        a.close()


def test_bad_rating_with_soft_keys_on_a_buttons_only_box(broker, ledger, center, make_terminal, factory, clock):
    t = make_terminal()
    a = attach(t, "buttons-only-box", simulate=True, pin_factory=factory, key_clock=clock)
    pins = a.profile.keys.pins
    try:
        center.catalog(version="v9")
        center.duty()
        center.case("SH1002")
        wait_for(lambda: t.state.phase == Phase.CASE and t.state.catalog is not None, what="case and catalog")
        press(factory, clock, pins["very_dissatisfied"])  # 非常不满意 → the reasons list on the small display
        wait_for(lambda: t.state.phase == Phase.REASONS, what="reasons")
        for key in ("satisfied", "satisfied", "satisfied", "satisfied", "basically_satisfied"):  # 下移 ×4, 选择
            press(factory, clock, pins[key])
        wait_for(lambda: t.state.selected == {"505"}, what="505 chosen")
        press(factory, clock, pins["dissatisfied"])  # 提交
        wait_for(lambda: t.state.phase == Phase.THANKS, what="thank-you")
        rows = wait_for(lambda: query(ledger.db_path, "SELECT level, channel, reasons, catalog FROM ratings"),
                        what="ledger row")
        assert rows == [("very_dissatisfied", "keys", "505", "v9")]
        wait_for(lambda: t.outbox.counts().pending == 0, what="receipted")
    finally:
        a.close()


def test_repeat_and_chord_presses_do_not_make_more_ratings(broker, ledger, center, make_terminal, factory, clock):
    t = make_terminal()
    a = attach(t, "official-7in-touch", simulate=True, pin_factory=factory, key_clock=clock)
    pins = a.profile.keys.pins
    try:
        center.duty()
        center.case("SH1003")
        wait_for(lambda: t.state.phase == Phase.CASE, what="case")
        factory.pin(pins["satisfied"]).drive_low()  # two keys at once: rejected, nothing rated
        factory.pin(pins["very_satisfied"]).drive_low()
        clock.advance(0.1)
        factory.pin(pins["satisfied"]).drive_high()
        factory.pin(pins["very_satisfied"]).drive_high()
        clock.advance(1)
        assert t.state.phase == Phase.CASE and a.rig.keys.rejected["chord"] == 2
        press(factory, clock, pins["satisfied"])
        wait_for(lambda: t.state.phase == Phase.THANKS, what="thanks")
        for _ in range(3):
            press(factory, clock, pins["very_satisfied"])  # repeats in THANKS, then the repeat guard in IDLE
        wait_for(lambda: t.outbox.counts().pending == 0, what="receipted")
        assert query(ledger.db_path, "SELECT case_id, level FROM ratings") == [("SH1003", "satisfied")]
    finally:
        a.close()
