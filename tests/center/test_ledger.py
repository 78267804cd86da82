"""The minimal center ledger against a real broker: one row per id, one first rating per center and
case, receipts only after the commit, refusals the sender can act on, ratings checked against bindings
and published cases, and a ledger that no single message can stop."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from sqlalchemy import event
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from center.ledger import Ledger, gaps, main as ledger_main, query
from device import machine
from protocol import ids
from device.model import Case
from devkit import factories
from devkit.broker import Broker, free_port
from devkit.center import Center
from devkit.waiting import wait_for
from protocol import builders, codec, topics
from protocol.values import Channel, Level

STAFF = factories.staff()
CASE = factories.case_model("SH77")


def rating(device: str = "d1", case: Case | None = CASE, rid: str | None = None, seq: int = 1) -> dict:
    draft = machine.RatingDraft("case" if case else "staff", Level.SATISFIED, Channel.TOUCH, STAFF, case)
    return builders.rating(draft, builders.Origin("C1", "W01", device), rid or ids.uuid7(), seq, ids.wall_time())


def receipts(center, device: str) -> list[dict]:
    topic = f"{topics.PREFIX}/C1/device/{device}/receipt"
    return [i for m in center.messages_on(topic) for i in m["items"]]


def send(center, body: dict | bytes, device: str = "d1") -> None:
    center.publish(f"{topics.PREFIX}/C1/device/{device}/rating", body, retain=False)


def test_the_same_rating_twice_is_one_row_and_two_receipts(ledger, center):
    center.case("SH77")
    r = rating()
    send(center, r)
    wait_for(lambda: len(receipts(center, "d1")) == 1, what="the first receipt")
    send(center, r)   # a re-offer (its receipt was lost): one copy held at a time, see the intake tests below
    wait_for(lambda: len(receipts(center, "d1")) == 2, what="two receipts")
    assert [i["status"] for i in receipts(center, "d1")] == ["stored", "duplicate"]
    assert query(ledger.db_path, "SELECT id, first FROM ratings") == [(r["id"], 1)]


def test_a_second_rating_for_a_case_is_kept_but_not_first(ledger, center):
    center.case("SH77")
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
        decoded = [codec.decode("receipt", c) for c in chunks]  # each within the 16 KiB limit and the schema
        assert [i for d in decoded for i in d["items"]] == items

    check()


# ---- integrity of the record (issue 8) ---------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
W02_STAFF = {"id": "S0201", "name": "赵敏"}


def bind(center, device: str, window: str, state: str = "active") -> None:
    """What provisioning publishes for a paired terminal (retained)."""
    center.publish(f"{topics.PREFIX}/{center.center}/device/{device}/binding",
                   factories.binding(center.center, device, state, window))


def case_at(center, window: str, case_id: str, staff: dict) -> None:
    center.publish(f"{topics.PREFIX}/{center.center}/window/{window}/case",
                   factories.case(center.center, window, case_id, staff=staff, opened_at="2026-11-26T09:00:00+08:00"))


def claim(device: str, window: str, case_id: str, staff: str, center_id: str = "C1") -> dict:
    r = rating(device)
    return {**r, "center": center_id, "window": window, "case": case_id, "staff": staff}


def stored(db, rid: str) -> tuple | None:
    rows = query(db, "SELECT first, flags FROM ratings WHERE id=?", (rid,))
    return rows[0] if rows else None


def read_lines(proc: subprocess.Popen) -> list[str]:
    """The process's stderr lines as they come (a list that grows)."""
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True).start()
    return lines


def test_a_huge_seq_is_refused_and_the_ledger_goes_on(ledger, center):
    """seq 2^64 once killed the writer thread (OverflowError): nothing stored after it, no receipts."""
    center.case("SH77")
    hostile = {**rating(), "seq": 18446744073709551616}
    send(center, json.dumps(hostile).encode())
    genuine = rating()
    send(center, genuine)
    wait_for(lambda: len(receipts(center, "d1")) == 2, what="both answered")
    by_id = {i["id"]: i for i in receipts(center, "d1")}
    assert by_id[hostile["id"]]["status"] == "rejected" and "schema" in by_id[hostile["id"]]["reason"]
    assert by_id[genuine["id"]]["status"] == "stored"
    assert query(ledger.db_path, "SELECT id, first FROM ratings") == [(genuine["id"], 1)]
    assert ledger.health() is None


def test_a_record_the_database_refuses_is_rejected_and_the_rest_of_its_batch_is_stored(ledger, center, monkeypatch):
    """Any per-record failure (here a real SQLite refusal) refuses that record only: a savepoint per record."""
    center.case("SH77")
    wait_for(lambda: query(ledger.db_path, "SELECT 1 FROM cases WHERE case_id='SH77'"), what="the case stored")
    hostile, genuine = rating(), rating(device="d2")
    db = sqlite3.connect(ledger.db_path)
    db.execute(f"CREATE TRIGGER refuse BEFORE INSERT ON ratings WHEN NEW.id = '{hostile['id']}' "
               "BEGIN SELECT RAISE(ABORT, 'test: refused by the database'); END")
    db.close()
    # Both in one batch: hold the write lock, let the writer take a first record and wait on the lock,
    # queue the two meanwhile, release.
    lock = sqlite3.connect(ledger.db_path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    writing = threading.Event()  # an empty queue alone could mean "not arrived yet"
    ingest = ledger.record.ingest
    monkeypatch.setattr(ledger.record, "ingest", lambda batch: (writing.set(), ingest(batch))[1])
    send(center, rating(device="d3"), device="d3")
    wait_for(writing.is_set, what="the writer holds the first record")
    send(center, hostile)
    send(center, genuine, device="d2")
    wait_for(lambda: ledger._q.qsize() == 2, what="both queued behind it")
    lock.execute("ROLLBACK")
    lock.close()
    wait_for(lambda: receipts(center, "d1") and receipts(center, "d2"), what="both answered")
    [refused] = receipts(center, "d1")
    assert refused["status"] == "rejected" and "refused by the database" in refused["reason"]
    assert receipts(center, "d2")[-1]["status"] == "stored"
    ids_stored = {r[0] for r in query(ledger.db_path, "SELECT id FROM ratings")}
    assert genuine["id"] in ids_stored and hostile["id"] not in ids_stored
    assert ledger.failed == 1 and ledger.health() is None


def test_a_dead_writer_thread_stops_the_process_with_an_error(broker, center, tmp_path):
    """Never a live process that silently stores nothing: systemd restarts one that exits non-zero."""
    inject = ("import sys\nfrom center import ledger as L\n"
              "def broken(self, batch):\n    raise MemoryError('test: the writer fails')\n"
              "L.Ledger._store = broken\nsys.exit(L.main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", inject, "--port", str(broker.port), "--db",
                             str(tmp_path / "l.db"), "--center", "C1"], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines = read_lines(proc)
    try:
        wait_for(lambda: any("subscribed to" in ln for ln in lines), what="subscribed")
        send(center, rating())
        assert proc.wait(timeout=30) == 1
        wait_for(lambda: any("writer thread died" in ln for ln in lines), what="the reason logged")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_terminal_cannot_claim_another_windows_case(ledger, center):
    """A (bound to W01) rates the W02 case, naming W02 and its staff: kept, flagged, never the first."""
    bind(center, "A", "W01")
    bind(center, "B", "W02")
    case_at(center, "W02", "SH0201", W02_STAFF)
    forged = claim("A", "W02", "SH0201", "S0201")
    send(center, forged, device="A")
    wait_for(lambda: receipts(center, "A"), what="receipt for A")
    genuine = claim("B", "W02", "SH0201", "S0201")
    send(center, genuine, device="B")
    wait_for(lambda: receipts(center, "B"), what="receipt for B")
    assert receipts(center, "A")[0]["status"] == "stored"  # kept: an auditor sees it
    assert stored(ledger.db_path, forged["id"]) == (0, "window_mismatch")
    assert stored(ledger.db_path, genuine["id"]) == (1, None)
    assert ledger.flagged == 1


def test_a_rating_that_disagrees_with_the_published_case_is_flagged(ledger, center):
    """The case as the center published it wins: right window in the rating, wrong case or staff."""
    bind(center, "A", "W01")
    case_at(center, "W02", "SH0202", W02_STAFF)
    center.case("SH0101")  # at W01, staff S0101
    other_window = claim("A", "W01", "SH0202", "S0101")
    other_staff = claim("A", "W01", "SH0101", "S0999")
    unknown = claim("A", "W01", "SH-NEVER-PUBLISHED", "S0101")
    for r in (other_window, other_staff, unknown):
        send(center, r, device="A")
    wait_for(lambda: len(receipts(center, "A")) == 3, what="three receipts")
    assert stored(ledger.db_path, other_window["id"]) == (0, "case_window_mismatch,case_staff_mismatch")
    assert stored(ledger.db_path, other_staff["id"]) == (0, "case_staff_mismatch")
    assert stored(ledger.db_path, unknown["id"]) == (0, "unknown_case")


def test_an_unbound_terminal_is_pinned_to_the_window_of_its_first_rating(ledger, center):
    """No provisioning (hand-configured): checked against the published case, pinned on first use, flagged."""
    center.case("SH0101")
    case_at(center, "W02", "SH0203", W02_STAFF)
    first = claim("U", "W01", "SH0101", "S0101")
    send(center, first, device="U")
    wait_for(lambda: receipts(center, "U"), what="first receipt")
    moved = claim("U", "W02", "SH0203", "S0201")
    send(center, moved, device="U")
    wait_for(lambda: len(receipts(center, "U")) == 2, what="second receipt")
    assert stored(ledger.db_path, first["id"]) == (1, "unbound")
    assert stored(ledger.db_path, moved["id"]) == (0, "unbound,window_mismatch")
    assert query(ledger.db_path, "SELECT state, window, source FROM bindings WHERE device='U'") == [
        ("pinned", "W01", "first_use")]


def test_the_first_rating_rule_is_per_center(ledger, center, broker):
    """Case ids are the center's own: C2's first rating of a case id C1 also used is still first."""
    c2 = Center(broker.port, center="C2")
    try:
        center.case("SAME-ID")
        c2.case("SAME-ID")
        one = claim("d1", "W01", "SAME-ID", "S0101")
        two = claim("d1", "W01", "SAME-ID", "S0101", center_id="C2")
        send(center, one)
        c2.publish(f"{topics.PREFIX}/C2/device/d1/rating", two, retain=False)
        wait_for(lambda: len(query(ledger.db_path, "SELECT id FROM ratings")) == 2, what="both stored")
        assert sorted(query(ledger.db_path, "SELECT center, first FROM ratings")) == [("C1", 1), ("C2", 1)]
    finally:
        c2.close()


def test_messages_on_unparseable_device_topics_are_logged_and_counted(ledger, center, caplog):
    center.publish(f"{topics.PREFIX}/C1/device/bad.device/rating", rating(), retain=False)
    wait_for(lambda: ledger.bad_topic == 1, what="counted")
    assert any("cannot parse" in r.getMessage() and "bad.device" in r.getMessage() for r in caplog.records)


def test_events_keep_seq_alarm_and_detail(ledger, center):
    alarm = builders.alarm("outbox_full", "1000 of 1000 records held", builders.Origin("C1", "W01", "d1"),
                          ids.uuid7(), ids.wall_time())
    unrated = builders.unrated(CASE, builders.Origin("C1", "W01", "d1"), ids.uuid7(), 7, ids.wall_time())
    for e in (alarm, unrated):
        center.publish(f"{topics.PREFIX}/C1/device/d1/event", e, retain=False)
    wait_for(lambda: len(receipts(center, "d1")) == 2, what="two receipts")
    assert sorted(query(ledger.db_path, "SELECT event, seq, alarm, detail FROM events"), key=str) == sorted(
        [("alarm", None, "outbox_full", "1000 of 1000 records held"), ("unrated", 7, None, None)], key=str)


def test_an_old_ledger_database_gets_the_new_columns_and_keeps_its_rows(tmp_path):
    old = sqlite3.connect(tmp_path / "ledger.db")
    old.executescript("""
        CREATE TABLE ratings (id TEXT PRIMARY KEY, center TEXT NOT NULL, window TEXT NOT NULL, device TEXT NOT NULL,
            seq INTEGER NOT NULL, ts TEXT NOT NULL, kind TEXT NOT NULL, level TEXT NOT NULL, channel TEXT NOT NULL,
            case_id TEXT, item_code TEXT, staff TEXT, applicant TEXT, reasons TEXT, catalog TEXT,
            first INTEGER NOT NULL, received REAL NOT NULL);
        CREATE UNIQUE INDEX one_first_rating_per_case ON ratings(case_id) WHERE first = 1;
        CREATE TABLE events (id TEXT PRIMARY KEY, center TEXT NOT NULL, window TEXT NOT NULL, device TEXT NOT NULL,
            ts TEXT NOT NULL, event TEXT NOT NULL, case_id TEXT, staff TEXT, applicant TEXT, received REAL NOT NULL);
        INSERT INTO ratings VALUES ('r1','C1','W01','d1',1,'t','case','satisfied','touch','X',NULL,'S',NULL,NULL,NULL,1,0);
        INSERT INTO events VALUES ('e1','C1','W01','d1','t','alarm',NULL,NULL,NULL,0);
    """)
    old.close()
    Ledger(tmp_path / "ledger.db").stop()  # opening migrates (Alembic adopts the old file)
    cols = {t: [r[1] for r in query(tmp_path / "ledger.db", f"PRAGMA table_info({t})")] for t in ("ratings", "events")}
    assert {"seq", "alarm", "detail"} <= set(cols["events"]) and "flags" in cols["ratings"]
    assert query(tmp_path / "ledger.db", "SELECT id, first FROM ratings") == [("r1", 1)]
    assert query(tmp_path / "ledger.db", "SELECT name FROM sqlite_master WHERE type='index' AND sql LIKE '%first = 1%'"
                 ) == [("one_first_rating_per_center_case",)]


def test_the_gap_report_lists_each_devices_missing_sequence_numbers(ledger, center, capsys):
    """Ratings and `unrated` events share a terminal's sequence; alarms have none."""
    center.case("SH77")
    for seq in (1, 2, 6, 9):
        send(center, rating(seq=seq))
    unrated = builders.unrated(CASE, builders.Origin("C1", "W01", "d1"), ids.uuid7(), 3, ids.wall_time())
    center.publish(f"{topics.PREFIX}/C1/device/d1/event", unrated, retain=False)
    send(center, rating(device="d2", seq=2), device="d2")
    wait_for(lambda: len(receipts(center, "d1")) == 5 and receipts(center, "d2"), what="all stored")
    assert gaps(ledger.db_path) == {("C1", "d1"): [(4, 5), (7, 8)], ("C1", "d2"): [(1, 1)]}
    assert ledger_main(["gaps", "--db", str(ledger.db_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["C1/d1: missing 4-5, 7-8 (4)", "C1/d2: missing 1 (1)"]


def test_the_ledger_waits_for_a_broker_that_is_down_at_start(tmp_path):
    """No traceback: each failed attempt is logged with host:port and the cause, then it connects."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "center.ledger", "--port", str(port), "--db",
                             str(tmp_path / "l.db")], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    lines = read_lines(proc)
    (tmp_path / "b").mkdir()
    b = None
    try:
        wait_for(lambda: any(f"cannot reach the broker at 127.0.0.1:{port}: connection refused" in ln
                             for ln in lines), what="a failed attempt logged")
        assert proc.poll() is None
        b = Broker(port=port, workdir=str(tmp_path / "b")).start()
        # (a new session: nothing published before its first subscription is kept for it)
        wait_for(lambda: any("subscribed to" in ln for ln in lines), timeout=60, what="subscribed")
        c = Center(port)
        try:
            c.case("SH77")
            r = rating()
            send(c, r)
            wait_for(lambda: receipts(c, "d1"), timeout=60, what="stored once the broker is there")
            assert query(tmp_path / "l.db", "SELECT id, first FROM ratings") == [(r["id"], 1)]
        finally:
            c.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if b:
            b.stop()
    assert not [ln for ln in lines if "Traceback" in ln or " ERROR" in ln]


def test_a_receipt_is_never_published_before_its_transaction_committed(ledger, broker, center):
    """An observer opens the database read-only on every receipt and must find the record there.
    COMMIT is held back a little (a hook on the ledger's own engine, run before the commit is sent), so a
    receipt sent before its commit would reach the observer first."""
    event.listen(ledger.store.engine, "commit", lambda conn: time.sleep(0.3))
    missing: list[str] = []
    seen: list[str] = []
    obs = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="receipt-observer", protocol=mqtt.MQTTv5)

    def on_receipt(client, userdata, msg) -> None:
        for item in json.loads(msg.payload)["items"]:
            seen.append(item["id"])
            if not query(ledger.db_path, "SELECT 1 FROM ratings WHERE id=?", (item["id"],)):
                missing.append(item["id"])
    subscribed = threading.Event()
    obs.on_message = on_receipt
    obs.on_subscribe = lambda *_: subscribed.set()
    obs.connect("127.0.0.1", broker.port)
    obs.subscribe(f"{topics.PREFIX}/C1/device/+/receipt", qos=1)
    obs.loop_start()
    try:
        assert subscribed.wait(10)
        center.case("SH77")
        sent = [rating(seq=n) for n in range(1, 6)]
        for r in sent:
            send(center, r)
        wait_for(lambda: len(seen) == 5, what="five receipts")
        assert missing == []
    finally:
        obs.disconnect()
        obs.loop_stop()


def test_the_ledger_speaks_mqtt_3_1_1_with_a_persistent_session(broker, center, tmp_path):
    """Under 3.1.1: clean_session=False, so records published while the ledger is away still arrive."""
    center.case("SH77")
    led = Ledger(tmp_path / "l.db", port=broker.port, client_id="ledger-311", mqtt_version="3.1.1").start()
    r1 = rating(seq=1)
    send(center, r1)
    wait_for(lambda: receipts(center, "d1"), what="first receipt")
    led.stop()
    r2 = rating(seq=2)
    send(center, r2)  # the ledger is away
    led = Ledger(tmp_path / "l.db", port=broker.port, client_id="ledger-311", mqtt_version="3.1.1").start()
    try:
        wait_for(lambda: len(receipts(center, "d1")) == 2, what="second receipt")
        assert sorted(query(tmp_path / "l.db", "SELECT seq FROM ratings")) == [(1,), (2,)]
    finally:
        led.stop()
    with pytest.raises(ValueError):
        Ledger(tmp_path / "x.db", mqtt_version="4")


def _hold_the_database(ledger, monkeypatch):
    """Hold SQLite's write lock and wait until the writer is inside a batch (blocked on it)."""
    lock = sqlite3.connect(ledger.db_path, isolation_level=None, timeout=0)
    lock.execute("BEGIN IMMEDIATE")
    writing = threading.Event()
    ingest = ledger.record.ingest
    monkeypatch.setattr(ledger.record, "ingest", lambda batch: (writing.set(), ingest(batch))[1])
    return lock, writing


def test_re_offers_while_the_database_is_held_are_held_once(ledger, center, monkeypatch):
    """A slow database: terminals re-offer what got no receipt. The ledger keeps one copy of each offer,
    so its memory does not grow with the re-offers; every rating is stored once when the lock goes."""
    center.case("SH77")
    wait_for(lambda: query(ledger.db_path, "SELECT 1 FROM cases WHERE case_id='SH77'"), what="the case stored")
    lock, writing = _hold_the_database(ledger, monkeypatch)
    first = rating(device="d9")
    send(center, first, device="d9")
    wait_for(writing.is_set, what="the writer blocked on the lock")
    offers = [rating(device="d1", seq=k + 1) for k in range(10)]
    for _ in range(20):   # twenty re-offers of the same ten records
        for r in offers:
            send(center, r)
    wait_for(lambda: ledger.dropped["same"] == 190, what="190 identical offers dropped")
    assert ledger.held == 11, "the record in hand and the ten, once each"
    lock.execute("ROLLBACK")
    lock.close()
    wait_for(lambda: len(receipts(center, "d1")) == 10, what="ten receipts")
    assert {i["status"] for i in receipts(center, "d1")} == {"stored"}
    assert query(ledger.db_path, "SELECT count(*), count(DISTINCT id) FROM ratings") == [(11, 11)]
    wait_for(lambda: ledger.held == 0, what="nothing held after the commit")
    send(center, offers[0])   # offered again after its receipt: queued, and answered as a duplicate
    wait_for(lambda: len(receipts(center, "d1")) == 11, what="the duplicate's receipt")
    assert receipts(center, "d1")[-1]["status"] == "duplicate"


def test_past_the_intake_limit_offers_are_dropped_loudly_and_stored_when_offered_again(broker, center, tmp_path,
                                                                                      monkeypatch, caplog):
    led = Ledger(tmp_path / "ledger.db", port=broker.port, intake_max=5).start()
    try:
        lock, writing = _hold_the_database(led, monkeypatch)
        send(center, rating(device="d9", case=None), device="d9")
        wait_for(writing.is_set, what="the writer blocked on the lock")
        offers = [rating(case=None, seq=k + 1) for k in range(8)]
        for r in offers:
            send(center, r)
        wait_for(lambda: led.dropped["full"] == 4, what="4 offers dropped: 1 in hand + 4 queued = 5")
        assert led.held == 5
        assert "new offers are dropped" in caplog.text and "offered again" in caplog.text
        lock.execute("ROLLBACK")
        lock.close()
        wait_for(lambda: len(receipts(center, "d1")) == 4, what="receipts for the 4 held")
        for r in offers:   # the terminal re-offers whatever got no receipt: all 8 end up stored once
            send(center, r)
        wait_for(lambda: len(receipts(center, "d1")) == 12, what="every offer answered")
        stored = {r[0] for r in query(led.db_path, "SELECT id FROM ratings WHERE device = 'd1'")}
        assert stored == {r["id"] for r in offers}
    finally:
        led.stop()
