"""The whole loop through a real broker: case → terminal → rating → ledger row → receipt → empty outbox."""
from __future__ import annotations

from center.ledger import query
from device.machine import LevelPressed, Phase, ReasonsConfirmed, ReasonToggled
from devkit.waiting import wait_for
from protocol.values import Channel, Level


def test_case_to_receipt(broker, ledger, center, make_terminal):
    t = make_terminal()
    wait_for(lambda: t.online, what="terminal online")
    center.catalog()
    center.duty()
    center.case("SH0001")
    wait_for(lambda: t.state.phase == Phase.CASE and t.state.case.id == "SH0001", what="case shown")
    assert t.state.qr is not None and t.state.qr.url.startswith("https://")
    t.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))
    wait_for(lambda: t.state.phase == Phase.THANKS, what="thank-you")
    rid = t.state.last_rating_id
    rows = wait_for(lambda: query(ledger.db_path, "SELECT id, level, case_id, staff, applicant, first FROM ratings"),
                    what="ledger row")
    assert rows == [(rid, "satisfied", "SH0001", "S0101", "ap_0123456789abcdef", 1)]
    wait_for(lambda: t.outbox.counts().pending == 0, what="receipt empties the outbox")


def test_bad_rating_needs_a_reason_and_carries_the_catalog_version(broker, ledger, center, make_terminal):
    t = make_terminal()
    center.catalog(version="v7")
    center.case("SH0002")
    wait_for(lambda: t.state.phase == Phase.CASE and t.state.catalog is not None, what="case and catalog")
    t.submit(LevelPressed(Level.VERY_DISSATISFIED))
    wait_for(lambda: t.state.phase == Phase.REASONS, what="reasons screen")
    t.submit(ReasonsConfirmed())  # no reason chosen: refused
    t.submit(ReasonToggled("505"))
    t.submit(ReasonsConfirmed())
    wait_for(lambda: t.state.phase == Phase.THANKS, what="thank-you")
    rows = wait_for(lambda: query(ledger.db_path, "SELECT level, reasons, catalog FROM ratings"), what="row")
    assert rows == [("very_dissatisfied", "505", "v7")]


def test_case_closed_without_rating_sends_unrated_event(broker, ledger, center, make_terminal):
    t = make_terminal()
    center.case("SH0003")
    wait_for(lambda: t.state.phase == Phase.CASE, what="case shown")
    center.case("SH0003", state="closed")
    wait_for(lambda: t.state.phase == Phase.IDLE, what="idle")
    rows = wait_for(lambda: query(ledger.db_path, "SELECT event, case_id, staff, applicant FROM events"),
                    what="unrated event in the ledger")
    assert rows == [("unrated", "SH0003", "S0101", "ap_0123456789abcdef")]
    wait_for(lambda: t.outbox.counts().pending == 0, what="event receipted")


def test_rated_on_the_phone_closes_the_screen(broker, ledger, center, make_terminal):
    t = make_terminal()
    center.case("SH0004")
    wait_for(lambda: t.state.phase == Phase.CASE, what="case shown")
    center.case("SH0004", state="rated", rated_channel="qr")
    wait_for(lambda: t.state.phase == Phase.RATED_ELSEWHERE, what="rated elsewhere")
    t.submit(LevelPressed(Level.SATISFIED))  # too late: one case, one rating
    center.case("SH0004", state="closed")
    center.case("SH0005")
    wait_for(lambda: t.state.case is not None and t.state.case.id == "SH0005", what="next case")
    assert query(ledger.db_path, "SELECT count(*) FROM ratings") == [(0,)]
    assert query(ledger.db_path, "SELECT count(*) FROM events") == [(0,)]


def test_a_rated_case_redelivered_after_restart_is_not_rated_twice(broker, ledger, center, make_terminal, tmp_path):
    t = make_terminal("t9")
    center.case("SH0006")
    wait_for(lambda: t.state.phase == Phase.CASE, what="case shown")
    t.submit(LevelPressed(Level.SATISFIED))
    wait_for(lambda: t.state.phase == Phase.THANKS, what="thanks")
    t.stop()
    t2 = make_terminal("t9")  # same data dir: the retained case message arrives again
    wait_for(lambda: t2.state.case is not None, what="retained case delivered")
    assert t2.state.phase == Phase.IDLE and t2.state.case_rated
    t2.submit(LevelPressed(Level.VERY_SATISFIED))  # becomes a staff rating only with staff on duty: none here
    wait_for(lambda: query(ledger.db_path, "SELECT count(*) FROM ratings") == [(1,)], what="one row")
