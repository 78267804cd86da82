"""The minimal center ledger against a real broker: one row per id, one first rating per case,
receipts only after the commit, and refusals the sender can act on."""
from __future__ import annotations

import json

from center.ledger import query
from device import ids, machine, messages, records
from device.model import Case, Channel, Level, Staff
from tests.helpers import wait_for

STAFF = Staff("S0101", "王芳")
CASE = Case("SH77", "310115-001", "居住证办理", STAFF, "ap_0123456789abcdef", "张*")


def rating(device: str = "d1", case: Case | None = CASE, rid: str | None = None, seq: int = 1) -> dict:
    draft = machine.RatingDraft("case" if case else "staff", Level.SATISFIED, Channel.TOUCH, STAFF, case)
    return records.rating(draft, records.Origin("C1", "W01", device), rid or ids.uuid7(), seq, ids.wall_time())


def receipts(center, device: str) -> list[dict]:
    topic = f"{messages.PREFIX}/C1/device/{device}/receipt"
    return [i for m in center.messages_on(topic) for i in m["items"]]


def send(center, body: dict | bytes, device: str = "d1") -> None:
    center.publish(f"{messages.PREFIX}/C1/device/{device}/rating", body, retain=False)


def test_the_same_rating_twice_is_one_row_and_two_receipts(ledger, center):
    r = rating()
    send(center, r)
    send(center, r)
    wait_for(lambda: len(receipts(center, "d1")) == 2, what="two receipts")
    assert [i["status"] for i in receipts(center, "d1")] == ["stored", "duplicate"]
    assert query(ledger.db_path, "SELECT id, first FROM ratings") == [(r["id"], 1)]


def test_a_second_rating_for_a_case_is_kept_but_not_first(ledger, center):
    first, second = rating(), rating(device="d2")
    send(center, first)
    wait_for(lambda: receipts(center, "d1"), what="first receipt")
    send(center, second, device="d2")
    wait_for(lambda: len(receipts(center, "d2")) == 1, what="second receipt")
    assert sorted(query(ledger.db_path, "SELECT id, first FROM ratings")) == sorted([(first["id"], 1), (second["id"], 0)])


def test_a_device_cannot_speak_for_another(ledger, center):
    r = rating(device="d1")
    send(center, r, device="d9")  # published on d9's topic, claims to be d1
    wait_for(lambda: receipts(center, "d9"), what="refusal")
    [item] = receipts(center, "d9")
    assert item["status"] == "rejected" and "impersonation" in item["reason"]
    assert query(ledger.db_path, "SELECT count(*) FROM ratings") == [(0,)]


def test_an_invalid_rating_is_refused_with_a_reason_the_terminal_can_quarantine(ledger, center):
    bad = {**rating(), "level": "excellent"}
    send(center, json.dumps(bad).encode())
    send(center, b"not json at all")
    wait_for(lambda: ledger.rejected == 2, what="both refused")
    wait_for(lambda: receipts(center, "d1"), what="refusal")
    [item] = receipts(center, "d1")  # the unparseable one has no id to answer to
    assert item["id"] == bad["id"] and item["status"] == "rejected" and "schema" in item["reason"]


def test_a_refused_record_is_quarantined_on_the_terminal(ledger, center, make_terminal):
    """The terminal's own record is valid, so force a refusal: a ledger for another center's rules."""
    t = make_terminal("d5")
    wait_for(lambda: t.online, what="online")
    rec = t.outbox.add("rating", lambda rid, seq, ts: rating("d5", rid=rid, seq=seq))
    items = [{"id": rec.id, "status": "rejected", "reason": "test: refused by policy"}]
    t.courier.new_record(rec)
    center.publish(t.topics.receipt, {"v": 1, "type": "receipt", "items": items}, retain=False)
    wait_for(lambda: t.outbox.counts().quarantined == 1, what="quarantined")
    assert "record_rejected" in t.alarms.active()
    assert t.outbox.quarantined()[0][1].endswith("test: refused by policy")


def test_receipts_are_split_to_fit_the_terminals_inbound_limit():
    from hypothesis import given, settings, strategies as st
    from center.ledger import receipt_chunks

    item = st.builds(lambda status, reason: {"id": ids.uuid7(), "status": status,
                                             **({"reason": reason} if status == "rejected" else {})},
                     st.sampled_from(["stored", "duplicate", "rejected"]), st.text(min_size=0, max_size=200))

    @settings(max_examples=50, deadline=None)
    @given(st.lists(item, min_size=1, max_size=3000))
    def check(items):
        chunks = receipt_chunks(items)
        decoded = [messages.decode("receipt", c) for c in chunks]  # each within the 16 KiB limit and the schema
        assert [i for d in decoded for i in d["items"]] == items

    check()
