"""The maintenance screen's duties on real parts: the hidden gesture on every citizen screen, re-sending
quarantined ratings through a real broker whose ACL refused them, the queued count following receipts
from the real ledger, the core's connection problem in words."""
from __future__ import annotations

import pytest

from center.ledger import Ledger, query
from device.machine import Phase
from devkit.broker import Broker
from devkit.center import Center
from devkit.waiting import wait_for
from protocol.values import Level
from tests.ui.test_kiosk import enter, gesture, level_button, open_case, rate, ready
from ui.present import Screen


def open_maintenance(d):
    gesture(d)
    d.on(Screen.PIN)
    enter(d, "2468")
    return d.on(Screen.MAINTENANCE)


def row(d, label: str) -> str:
    return dict(d.k.maintenance.rows())[label]


@pytest.mark.parametrize("where", ["case", "reasons", "thanks"])
def test_the_gesture_opens_maintenance_on_every_citizen_screen(where, open_kiosk, center):
    d = open_kiosk(HCP_RATING_THANKS_S="30")
    ready(d, center)
    s = open_case(d, center, "SH9100")
    if where != "case":
        d.tap(level_button(s, Level.VERY_DISSATISFIED if where == "reasons" else Level.SATISFIED))
        d.on(Screen.REASONS if where == "reasons" else Screen.THANKS)
    phase = d.t.state.phase
    open_maintenance(d)
    assert d.t.state.phase == phase  # the core carries on underneath: nothing was pressed by the taps
    d.tap(d.widget.exit)
    d.on({"case": Screen.CASE, "reasons": Screen.REASONS, "thanks": Screen.THANKS}[where])


def test_quarantined_ratings_are_re_sent_from_the_maintenance_screen(open_kiosk, tmp_path):
    """The broker's ACL refuses the terminal's ratings (PUBACK 0x87: quarantined); the center fixes the
    ACL; the technician presses 重发隔离 and the rating reaches the ledger."""
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite hcp/#\ntopic deny hcp/v1/C1/device/held1/rating\n")
    (tmp_path / "acl-broker").mkdir()
    b = Broker(extra=f"acl_file {acl}", workdir=str(tmp_path / "acl-broker")).start()
    led = Ledger(tmp_path / "ledger.db", port=b.port).start()
    center = Center(b.port)
    try:
        d = open_kiosk("held1", port=b.port)
        ready(d, center, duty=False)
        rate(d, center, "SH9200", Level.SATISFIED)
        d.until(lambda: d.t.outbox.counts().quarantined == 1, what="rating quarantined by the broker's ACL")
        center.case("SH9200", state="closed")
        m = open_maintenance(d)
        d.until(lambda: row(d, "隔离记录") == "1", what="quarantine count on the screen")
        assert not m.actions["requeue"].disabled and m.actions["requeue"].text == "重发隔离"
        acl.write_text("topic readwrite hcp/#\n")  # the center fixes its ACL and restarts the broker
        b.stop()
        d.until(lambda: not d.t.online, what="terminal offline")
        b.start()
        d.until(lambda: d.t.online, timeout=30, what="terminal back online")
        assert d.t.outbox.counts().quarantined == 1  # nothing re-sends it by itself
        d.tap(m.actions["requeue"])
        assert "1 条隔离记录已重新发送" in d.texts()
        rows = wait_for(lambda: query(led.db_path, "SELECT case_id, level FROM ratings"), what="rating at the ledger")
        assert rows == [("SH9200", "satisfied")]
        d.until(lambda: (d.t.outbox.counts().pending, d.t.outbox.counts().quarantined) == (0, 0), what="delivered")
        d.until(lambda: row(d, "隔离记录") == "0" and m.actions["requeue"].disabled, what="screen caught up")
    finally:
        center.close()
        led.stop()
        b.stop()


def test_the_queued_count_follows_receipts_without_polling(open_kiosk, center, broker, tmp_path):
    """The core tells the views when the outbox counts change (receipts change no state)."""
    d = open_kiosk(HCP_RATING_THANKS_S="1")
    ready(d, center, duty=False)  # no ledger yet: the rating waits for its receipt
    rate(d, center, "SH9300", Level.SATISFIED)
    center.case("SH9300", state="closed")
    d.on(Screen.IDLE, Phase.IDLE)
    d.until(lambda: "待送 1" in d.widget.bar.status.text, what="one queued")
    led = Ledger(tmp_path / "ledger.db", port=broker.port).start()
    try:
        wait_for(lambda: query(led.db_path, "SELECT count(*) FROM ratings") == [(1,)], what="stored")
        d.until(lambda: "待送" not in d.widget.bar.status.text, what="queued count gone after the receipt")
        assert d.widget.bar.status.text == "在线"
    finally:
        led.stop()


def test_the_connection_problem_is_shown_in_words(open_kiosk, center, broker):
    d = open_kiosk()
    ready(d, center, duty=False)
    open_maintenance(d)
    assert row(d, "连接问题") == "无"
    broker.stop()
    problem = wait_for(lambda: getattr(d.t, "connection_problem", None), what="the core's connection problem")
    d.until(lambda: row(d, "连接问题") == problem and problem in d.texts(), what="problem on the screen")
    broker.start()
    d.until(lambda: row(d, "连接问题") == "无", timeout=30, what="problem cleared once connected")


def test_re_enrol_is_disabled_with_a_reason_on_a_terminal_configured_by_hand(open_kiosk, center):
    d = open_kiosk()
    ready(d, center, duty=False)
    m = open_maintenance(d)
    b = m.actions["re_enrol"]
    assert b.disabled and b.text == "重新注册\n手工配置"
    with pytest.raises(ValueError):
        d.t.re_enrol()
