"""Follow-ups in a real Store (SQLite file, then a throwaway PostgreSQL database): which bad ratings open one,
deadlines, steps and notes with their history, the lists a supervisor sees, the overdue sweep, and the
alert outbox drained by the worker through a real signed webhook receiver and through the SMS file
gateway. Time is passed in (`now`), never waited for."""
from __future__ import annotations

import json
import uuid
from datetime import datetime

import pytest
from sqlalchemy import insert, select

from center import followup
from center.accounts import create_user, set_disabled
from center.followup import alerts as falerts
from center.followup import store as fstore
from center.followup.clocks import FollowupPolicy, deadlines
from center.followup.states import IllegalStep
from center.followup.worker import AlertWorker
from center.sms.gateway import FileGateway
from center.store import Store
from center.store.tables import alerts, catalogs, followup_notes, notes, photos, ratings
from tests.center.test_sms_gateway import SECRET, Receiver

POLICY = FollowupPolicy()
NOW = datetime.fromisoformat("2026-11-30T10:00:00+08:00").timestamp()   # a Monday
DAY = 86400.0
APPLICANT = "APPLICANT-TOKEN-7f3a"


def rating(store: Store, level: str = "very_dissatisfied", *, window: str = "W1", channel: str = "qr",
           case: str | None = "SH77", first: int = 1, staff: str | None = "S1", reasons: str | None = "R1,R9",
           opened: bool = True, now: float = NOW) -> dict:
    """Store a rating row as the record's door does, then call the door's follow-up hook on it."""
    row = dict(id=str(uuid.uuid4()), center="C1", window=window, device="center-web", seq=1,
               ts="2026-11-30T10:00:00+08:00",
               kind="rating", level=level, channel=channel, case_id=case, item_code="IT1", staff=staff,
               applicant=APPLICANT, reasons=reasons, catalog="v1", first=first, received=now, flags=None)
    with store.write() as conn:
        conn.execute(insert(ratings).values(**row))
        assert followup.open(conn, row, now, POLICY) is opened
    return row


@pytest.fixture
def store(store: Store) -> Store:
    create_user(store, "sup1", "password-123456", "supervisor", frozenset({"W1"}), now=NOW)
    create_user(store, "sup2", "password-123456", "supervisor", frozenset({"W1", "W2"}), now=NOW)
    create_user(store, "boss", "password-123456", "admin", now=NOW)
    return store


def test_a_bad_rating_opens_one_follow_up_with_clocks_history_and_an_alert(store: Store) -> None:
    r = rating(store)
    with store.write() as conn:
        assert followup.open(conn, r, NOW + 5, POLICY) is False     # once per rating
        fu = fstore.get(conn, r["id"])._mapping
        hist = fstore.history(conn, r["id"])
        queued = conn.execute(select(alerts)).all()
    due = deadlines(NOW, POLICY)
    assert (fu["state"], fu["window"], fu["staff"], fu["level"], fu["opened"]) == ("open", "W1", "S1",
                                                                                    "very_dissatisfied", NOW)
    assert (fu["due_contact"], fu["due_answer"], fu["due_rectify"]) == (due.contact, due.answer, due.rectify)
    assert [(e.action, e.who) for e in hist] == [("opened", "system")]
    assert len(queued) == 1 and queued[0].kind == "opened" and queued[0].state == "pending"
    body = json.loads(queued[0].body)
    assert body["supervisors"] == ["sup1", "sup2"] and body["window"] == "W1" and body["followup"] == r["id"]
    assert "SH77" not in queued[0].body and APPLICANT not in queued[0].body


@pytest.mark.parametrize("kwargs,opens", [
    (dict(level="satisfied"), False),
    (dict(level="basically_satisfied"), False),
    (dict(level="dissatisfied"), True),
    (dict(level="dissatisfied", first=0), False),                         # a later rating of a rated case
    (dict(level="dissatisfied", first=0, channel="staff_qr"), True),      # every staff code's bad rating
    (dict(level="very_dissatisfied", first=0, channel="hall_qr", case=None, staff=None), True),
    (dict(level="dissatisfied", first=0, channel="touch", case=None), True),   # a rating of no case
])
def test_which_ratings_are_followed_up(store: Store, kwargs: dict, opens: bool) -> None:
    r = rating(store, opened=opens, **kwargs)
    with store.read() as conn:
        assert (fstore.get(conn, r["id"]) is not None) is opens


def test_follow_up_off_without_a_policy(store: Store) -> None:
    row = dict(id="x1", center="C1", window="W1", level="very_dissatisfied", channel="qr", case_id="K", first=1)
    with store.write() as conn:
        assert fstore.open_for_rating(conn, row, NOW, None) is False


def test_steps_notes_and_history(store: Store) -> None:
    r = rating(store)
    rid = r["id"]
    with store.write() as conn:
        fstore.transition(conn, rid, "contact", "sup1", NOW + 60, "电话联系")
        with pytest.raises(IllegalStep):
            fstore.transition(conn, rid, "contact", "sup1", NOW + 61)      # already contacted
        with pytest.raises(IllegalStep):
            fstore.transition(conn, rid, "answer", "sup1", NOW + 62, "")   # answer needs a note
        fstore.transition(conn, rid, "answer", "sup1", NOW + 120, "已答复")
        fstore.add_note(conn, rid, "sup2", "回访满意", NOW + 130)
        fstore.transition(conn, rid, "close", "sup2", NOW + 140)
        with pytest.raises(fstore.NotFound):
            fstore.transition(conn, "nope", "contact", "sup1", NOW)
        with pytest.raises(fstore.NotFound):
            fstore.add_note(conn, "nope", "sup1", "x", NOW)
    with store.read() as conn:
        fu = fstore.get(conn, rid)
        hist = fstore.history(conn, rid)
        n = conn.execute(select(followup_notes.c.id).where(followup_notes.c.rating_id == rid)).all()
    assert (fu.state, fu.contacted_at, fu.answered_at, fu.closed_at, fu.updated_by) == (
        "closed", NOW + 60, NOW + 120, NOW + 140, "sup2")
    assert [(e.action, e.who, e.text) for e in hist] == [
        ("opened", "system", ""), ("contact", "sup1", "电话联系"), ("answer", "sup1", "已答复"),
        ("note", "sup2", "回访满意"), ("close", "sup2", "")]
    assert len(n) == 5


def test_a_stale_step_is_refused(store: Store) -> None:
    """Two supervisors press 'contacted' on the same page: the second finds the state moved on."""
    r = rating(store)
    with store.write() as conn:
        fstore.transition(conn, r["id"], "contact", "sup1", NOW + 1)
    with store.write() as conn:
        with pytest.raises(IllegalStep):
            fstore.transition(conn, r["id"], "contact", "sup2", NOW + 2)


def test_lists_by_window_state_and_overdue(store: Store) -> None:
    a = rating(store, window="W1", now=NOW)
    b = rating(store, window="W2", case="K2", now=NOW + 10)
    c = rating(store, window="W3", case="K3", now=NOW + 20)
    with store.write() as conn:
        fstore.transition(conn, a["id"], "contact", "sup1", NOW + 30)
        fstore.transition(conn, a["id"], "answer", "sup1", NOW + 40, "ok")
        fstore.transition(conn, a["id"], "close", "sup1", NOW + 50)
    later = NOW + 2 * DAY      # Wednesday 10:00: every contact clock (end of Tuesday) has run out
    with store.read() as conn:
        ids = lambda items: [i.rating_id for i in items]   # noqa: E731
        assert ids(fstore.listing(conn, later)) == [c["id"], b["id"]]
        assert ids(fstore.listing(conn, later, show="all")) == [c["id"], b["id"], a["id"]]
        assert ids(fstore.listing(conn, later, show="closed")) == [a["id"]]
        assert ids(fstore.listing(conn, later, frozenset({"W1", "W2"}), show="all")) == [b["id"], a["id"]]
        assert ids(fstore.listing(conn, later, frozenset(), show="all")) == []
        assert ids(fstore.listing(conn, later, show="all", after=(NOW + 20, c["id"]))) == [b["id"], a["id"]]
        assert ids(fstore.listing(conn, later, show="all", after=(NOW + 10, ""))) == [b["id"], a["id"]]
        assert ids(fstore.listing(conn, later, show="all", after=(NOW + 10, b["id"]))) == [a["id"]]
        assert ids(fstore.listing(conn, NOW + 60, show="overdue")) == []
        assert ids(fstore.listing(conn, later, show="overdue")) == [c["id"], b["id"]]
        listed = {i.rating_id: i for i in fstore.listing(conn, later, show="all")}
        assert listed[b["id"]].overdue == ("contact",) and listed[a["id"]].overdue == ()
        assert ids(fstore.overdue(conn, later, frozenset({"W3"}))) == [c["id"]]
        with pytest.raises(ValueError):
            fstore.listing(conn, later, show="everything")


def test_the_sweep_queues_one_overdue_alert_per_clock(store: Store) -> None:
    r = rating(store)
    with store.write() as conn:
        assert fstore.sweep_overdue(conn, NOW + DAY) == 0
        assert fstore.sweep_overdue(conn, NOW + 2 * DAY) == 1         # contact ran out
        assert fstore.sweep_overdue(conn, NOW + 2 * DAY + 60) == 0    # once
        fstore.transition(conn, r["id"], "contact", "sup1", NOW + 2 * DAY + 61)
        assert fstore.sweep_overdue(conn, NOW + 30 * DAY) == 2        # answer and rectify
        keys = sorted(conn.execute(select(alerts.c.key)).scalars())
    assert keys == sorted([f"fu-opened-{r['id']}", f"fu-overdue-contact-{r['id']}", f"fu-overdue-answer-{r['id']}",
                           f"fu-overdue-rectify-{r['id']}"])


def test_a_backlog_of_alerted_follow_ups_never_hides_newer_ones(store: Store) -> None:
    a, b = rating(store, now=NOW), rating(store, case="K2", now=NOW + 1)
    with store.write() as conn:
        assert fstore.sweep_overdue(conn, NOW + 2 * DAY, limit=1) == 1
        assert fstore.sweep_overdue(conn, NOW + 2 * DAY, limit=1) == 1
        assert fstore.sweep_overdue(conn, NOW + 2 * DAY, limit=1) == 0
        keys = set(conn.execute(select(alerts.c.key).where(alerts.c.kind == "overdue")).scalars())
    assert keys == {f"fu-overdue-contact-{a['id']}", f"fu-overdue-contact-{b['id']}"}


def test_detail_shows_the_rating_never_the_applicant(store: Store) -> None:
    r = rating(store)
    with store.write() as conn:
        conn.execute(insert(catalogs).values(center="C1", version="v1", updated=NOW,
                                             reasons=json.dumps([{"code": "R1", "zh": "态度差"}])))
        conn.execute(insert(notes).values(rating_id=r["id"], text="等了两个小时"))
        for i in range(2):
            conn.execute(insert(photos).values(name=f"p{i}", rating_id=r["id"], bytes=1, width=1, height=1,
                                               created=NOW))
    with store.read() as conn:
        d = fstore.detail(conn, r["id"], NOW + 2 * DAY)
        assert fstore.detail(conn, "nope", NOW) is None
    assert d.reasons == [("R1", "态度差"), ("R9", "R9")] and d.text == "等了两个小时" and d.photos == 2
    assert d.overdue == ("contact",) and d.rated_at.startswith("2026-11-30")
    assert APPLICANT not in repr(d) and "SH77" not in repr(d)


def test_the_worker_sends_signed_webhook_alerts_with_retries(store: Store) -> None:
    r = rating(store)
    with Receiver([500, 200, 200]) as rx:
        gw = falerts.WebhookAlerts(rx.url, SECRET)
        w = AlertWorker(store, gw)
        assert w.run_once(NOW) == 1                           # 500: retry later
        assert w.run_once(NOW + 1) == 0                       # not yet
        assert w.run_once(NOW + 31) == 1                      # sent
        assert w.run_once(NOW + 2 * DAY) == 1                 # the sweep found the contact clock overdue
        assert w.run_once(NOW + 2 * DAY + 3600) == 0
        gw.close()
    with store.read() as conn:
        rows = conn.execute(select(alerts).order_by(alerts.c.id)).all()
    assert [(a.kind, a.state, a.attempts) for a in rows] == [("opened", "sent", 2), ("overdue", "sent", 1)]
    assert all(q["valid"] for q in rx.requests)
    assert [q["key"] for q in rx.requests] == [f"fu-opened-{r['id']}"] * 2 + [f"fu-overdue-contact-{r['id']}"]
    first = rx.requests[0]["body"]
    assert first["kind"] == "opened" and first["window"] == "W1" and first["supervisors"] == ["sup1", "sup2"]
    assert first["path"] == f"/console/followups/{r['id']}"
    assert rx.requests[2]["body"]["clock"] == "contact"
    assert all(APPLICANT not in json.dumps(q["body"]) and "SH77" not in json.dumps(q["body"]) for q in rx.requests)


def test_a_refusing_receiver_fails_the_alert_without_retrying(store: Store) -> None:
    rating(store)
    with Receiver([403]) as rx:
        gw = falerts.WebhookAlerts(rx.url, SECRET)
        AlertWorker(store, gw).run_once(NOW)
        AlertWorker(store, gw).run_once(NOW + DAY)
        gw.close()
    with store.read() as conn:
        a = conn.execute(select(alerts)).one()
    assert (a.state, a.attempts, a.last_error) == ("failed", 1, "alert webhook: receiver refused the alert, HTTP 403")
    assert len(rx.requests) == 1


def test_sms_alerts_go_to_each_supervisor_with_a_number(store: Store, tmp_path) -> None:
    set_disabled(store, "sup2", True, "boss")
    r = rating(store)
    rating(store, window="W9", case="K9")          # no supervisor for W9
    spool = tmp_path / "spool"
    gw = falerts.SmsAlerts(FileGateway(spool), {"sup1": "13800000001", "sup2": "13800000002"}, "浦东")
    AlertWorker(store, gw).run_once(NOW)
    files = sorted(spool.glob("*.json"))
    assert [f.name for f in files] == [f"fu-opened-{r['id']}-sup1.json"]
    sent = json.loads(files[0].read_text("utf-8"))
    assert sent["phone"] == "13800000001" and sent["text"] == "【浦东】新差评待整改：窗口W1，非常不满意，请于12月1日内联系核实"
    with store.read() as conn:
        states = sorted((a.window, a.state, a.last_error) for a in conn.execute(select(alerts)))
    assert states == [("W1", "sent", None), ("W9", "failed", "no supervisor of window W9 has an alert phone number")]
