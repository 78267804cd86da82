"""Delivery through real brokers: offline backlog, refusals, a full outbox, hostile input."""
from __future__ import annotations

import json
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from center.ledger import query
from device.machine import CaseOpened, LevelPressed, Phase
from devkit import factories
from devkit.broker import Broker
from devkit.waiting import wait_for
from protocol.values import Channel, Level

def rate_cases(t, n: int, prefix: str, step=None) -> None:
    """n case/rating pairs, queued on the terminal's core (as the link and the screen would), or stepped
    right here with `step=t.handle` when the test itself is the core thread."""
    step = step or t.submit
    for i in range(n):
        case = factories.case_model(f"{prefix}{i:05d}")
        step(CaseOpened(case, qr=t.dynamic_qr(case)))
        step(LevelPressed(Level.SATISFIED, Channel.TOUCH))


def answered(t) -> int:
    """Records whose offer the broker has answered: PUBACK in (awaiting the receipt) or quarantined."""
    flights = t.courier.sync() or {}
    return t.outbox.counts().quarantined + sum(1 for _, acked in flights.values() if acked)


def test_offline_backlog_of_500_arrives_exactly_once(broker, ledger, center, make_terminal):
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    broker.stop()
    wait_for(lambda: not t.online, what="terminal sees the broker gone")
    rate_cases(t, 500, "OFF")
    wait_for(lambda: t.outbox.counts().pending == 500, what="500 ratings committed offline")
    ids = {r.id for r in t.outbox.due(1000)}
    broker.start()
    wait_for(lambda: t.outbox.counts().pending == 0, timeout=60, what="backlog drained and receipted")
    rows = query(ledger.db_path, "SELECT id FROM ratings")
    assert len(rows) == 500 and {r[0] for r in rows} == ids
    assert query(ledger.db_path, "SELECT count(DISTINCT case_id) FROM ratings") == [(500,)]
    assert not t.rejected, f"the terminal refused center messages: {dict(t.rejected)}"


def test_ledger_down_means_no_receipt_and_the_terminal_offers_again(broker, ledger, center, tmp_path):
    from center.ledger import Ledger
    from device.terminal import Terminal
    from devkit.terminals import terminal_config
    ledger.stop()
    skew = [0.0]  # the terminal's clock runs ahead on demand: a receipt timeout passes without waiting for it
    t = Terminal(terminal_config(broker.port, tmp_path / "t1", HCP_DEVICE_ID="t1"), "t1",
                 clock=lambda: time.monotonic() + skew[0])
    t.start()
    try:
        rate_cases(t, 20, "NOREC")
        wait_for(lambda: len({m["id"] for m in center.messages_on("rating")}) == 20, what="20 ratings offered")
        offered_at = max(m["ts"] for m in center.messages_on("rating"))
        wait_for(lambda: answered(t) == 20, what="20 PUBACKs")
        assert t.outbox.counts().pending == 20, "a PUBACK is not a receipt: the records must stay in the outbox"
        # A new ledger with a new session: only the terminal's re-offers can bring it the records.
        led = Ledger(tmp_path / "ledger2.db", port=broker.port, client_id="ledger-2").start()
        try:
            skew[0] += t.cfg.outbox.receipt_timeout_s + t.cfg.outbox.retry_max_s
            offers = t.courier.sync()
            assert offers is not None and len(offers) == 20
            assert all(n >= 2 for n, _ in offers.values()), f"not offered again after the receipt timeout: {offers}"
            wait_for(lambda: t.outbox.counts().pending == 0, what="receipts from the new ledger")
            assert query(led.db_path, "SELECT count(*) FROM ratings") == [(20,)]
            # the retained status says so at once (not at the next 5-minute status): the center's fleet view
            wait_for(lambda: [m for m in center.messages_on("status")
                              if m["state"] == "online" and m["outbox"]["pending"] == 0
                              and m["ts"] > offered_at], what="a status with the outbox emptied")
        finally:
            led.stop()
    finally:
        t.stop()


def test_broker_refusal_quarantines_with_an_alarm_and_loses_nothing(tmp_path, center_factory=None):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite hcp/#\ntopic deny hcp/v1/C1/device/refused/rating\n")
    (tmp_path / "b").mkdir()
    with Broker(extra=f"acl_file {acl}", workdir=str(tmp_path / "b")) as b:
        from center.ledger import Ledger
        from devkit.center import Center
        from devkit.terminals import start_terminal, terminal_config
        led = Ledger(tmp_path / "l.db", port=b.port).start()
        center = Center(b.port)
        t = start_terminal(terminal_config(b.port, tmp_path / "t", HCP_DEVICE_ID="refused"), "refused")
        try:
            wait_for(lambda: t.online, what="online")
            rate_cases(t, 3, "ACL")
            wait_for(lambda: answered(t) == 3, what="the broker's answer to all three")
            counts = t.outbox.counts()
            assert (counts.pending, counts.quarantined) == (0, 3), f"a PUBACK 0x87 must quarantine: {counts}"
            assert [reason for _, reason in t.outbox.quarantined()] == ["PUBACK 0x87 Not authorized"] * 3
            assert "publish_refused" in t.alarms.active()
            alarms = wait_for(lambda: [m for m in center.messages_on("event") if m.get("alarm") == "publish_refused"],
                              what="alarm event at the center")
            assert alarms[0]["device"] == "refused"
            status = wait_for(lambda: [m for m in center.messages_on("status") if "publish_refused" in m.get("alarms", [])],
                              what="alarm in the retained status")
            assert status[-1]["outbox"]["quarantined"] == 3
            assert query(led.db_path, "SELECT count(*) FROM ratings") == [(0,)]
        finally:
            t.stop()
            center.close()
            led.stop()


def test_full_outbox_alarms_at_80_percent_and_refuses_without_evicting(broker, tmp_path):
    from device.terminal import Terminal
    from devkit.terminals import terminal_config
    t = Terminal(terminal_config(broker.port, tmp_path / "t1", HCP_OUTBOX_CAPACITY="10",
                                 HCP_OUTBOX_ALARM_PERCENT="80"), "t1")
    t.start()  # network and courier; this test is the core thread, so every step below is done on return
    try:
        rate_cases(t, 7, "FULL", step=t.handle)
        assert t.outbox.counts().pending == 7 and "outbox_high" not in t.alarms.active()
        rate_cases(t, 1, "FULLB", step=t.handle)
        assert "outbox_high" in t.alarms.active(), "8 of 10 is 80 %: outbox_high"
        rate_cases(t, 2, "FULLC", step=t.handle)
        assert t.outbox.counts().pending == 10
        before = {r.id for r in t.outbox.due(100)}
        rate_cases(t, 1, "OVER", step=t.handle)
        assert t.state.phase == Phase.UNAVAILABLE, "a full outbox: the citizen is told to scan instead"
        assert "rating_not_stored" in t.alarms.active()
        assert {r.id for r in t.outbox.due(100)} == before, "nothing evicted"
    finally:
        t.stop()


HOSTILE = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"v": st.just(1), "type": st.sampled_from(["case", "duty", "catalog", "config", "receipt"]),
                           "center": st.sampled_from(["C1", "C2", "+", "#"]), "window": st.sampled_from(["W01", "W/1"]),
                           "state": st.sampled_from(["open", "closed", "rated", "x"])}).map(lambda v: json.dumps(v).encode()),
)
INBOUND = ["case", "duty", "catalog", "config", "receipt"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(INBOUND), payload=HOSTILE)
def test_any_inbound_payload_is_rejected_with_a_reason_or_accepted(idle_terminal, kind, payload):
    """The link hands every message to `_inbound`: it never raises, and a refusal is counted by reason."""
    t = idle_terminal
    topic = {"case": t.topics.case, "duty": t.topics.duty, "catalog": t.topics.catalog,
             "config": t.topics.config, "receipt": t.topics.receipt}[kind]
    before = sum(t.rejected.values())
    queued = t._events.qsize()
    t._inbound(topic, payload, False)
    assert sum(t.rejected.values()) == before + 1 or t._events.qsize() == queued + 1 or kind == "receipt"


@pytest.fixture
def idle_terminal(tmp_path):
    from device.terminal import Terminal
    from devkit.terminals import terminal_config
    t = Terminal(terminal_config(1, tmp_path / "t"), "t1")  # never started: no network needed
    yield t
    t.outbox.close()


def test_hostile_messages_through_the_broker_are_counted_and_the_terminal_keeps_working(broker, center,
                                                                                          make_terminal):
    import random
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    rnd = random.Random(4711)
    corpus = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200))) for _ in range(20)]
    corpus += [b"null", b"", b"[]", b'{"v":2,"type":"case"}', b'{"v":1,"type":"case","v":1}', b"NaN"]
    topics = [center.topics.case, center.topics.duty, center.topics.catalog, t.topics.config, t.topics.receipt]
    sends = [(topics[i % len(topics)], p) for i, p in enumerate(corpus)]  # b"" lands on duty (on case it clears)
    sends += [(center.topics.case, json.dumps({"v": 1, "type": "case", "center": "C1", "window": "W01", "state": "open",
                           "case": {"id": "X1", "item_code": "a", "item_name": "b"},
                           "staff": {"id": "S1", "name": "王"}, "opened_at": "2026-11-26T09:00:00+08:00",
                           "applicant": {"token": "ap_0123456789", "display": "张13800138000"}}).encode()),
              (center.topics.catalog, b"[" * 100000)]
    for topic, payload in sends:
        center.publish(topic, payload, retain=False)
    wait_for(lambda: sum(t.rejected.values()) == len(sends), what="every hostile message counted")
    assert t.rejected["personal_data"] == 1 and t.rejected["oversized"] == 1
    center.case("AFTER")
    wait_for(lambda: t.state.case is not None and t.state.case.id == "AFTER", what="still working")


def test_oversized_and_wrong_window_cases_are_rejected_then_a_good_case_shows(broker, center, make_terminal):
    t = make_terminal()
    wait_for(lambda: t.online, what="online")
    center.publish(center.topics.case, b"{" + b" " * 20000 + b"}", retain=False)
    body = center.case("GOOD1")
    bad = {**body, "window": "W99", "case": {**body["case"], "id": "BAD1"}}
    center.publish(center.topics.case, bad, retain=False)
    center.case("GOOD2")
    wait_for(lambda: t.state.case is not None and t.state.case.id == "GOOD2", what="good case shown")
    wait_for(lambda: t.rejected["oversized"] == 1 and t.rejected["wrong_window"] == 1, what="counted by reason")
