"""The case and duty feed with real parts: the feed served by uvicorn on a free port, API keys on the store
(SQLite and PostgreSQL), and — end to end — the center service, a Mosquitto broker and a real terminal core.

Store parts inspect what the feed owes (`notices` rows, decoded with the terminals' own decoder) and what the
center learned (`cases`, `contacts`, `audit`); the end-to-end test watches the terminal show the case."""
from __future__ import annotations

import json
import weakref
from dataclasses import replace

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings, strategies as st
from sqlalchemy import select

from center.apikeys import create_key, revoke_key
from center.ledger.record import Record
from center.service import CenterService, demo_options
from center.sms.schedule import SmsPolicy
from center.store.tables import audit, cases, contacts, notices, sms_jobs
from center.web.feed import MAX_BODY, PUBLISHED, feed_router, republish
from center.web.server import WebServer
from device.machine import Phase
from devkit import factories
from devkit.terminals import TEST_QR_KEY
from devkit.waiting import wait_for
from protocol import codec, topics

C = "C1"
WINDOWS = frozenset({"W01", "W02", "W03"})
PHONE = "13912345678"


def case_body(case_id: str = "SH0001", **over) -> dict:
    body = {"id": case_id, "item_code": "310115-001", "item_name": "居住证办理",
            "staff": {"id": "S0101", "name": "王芳", "number": "0101"},
            "applicant": {"token": "ap_5f0c2a9e71b3d846", "display": "张*"}}
    return {**body, **over}


@pytest.fixture
def feed(store):
    """(base URL, store, record) of a feed over `store` for center C1 and windows W01–W03."""
    record = Record(store, sms_policy=SmsPolicy(delay_s=0, start="00:00", end="23:59"))
    app = FastAPI()
    app.include_router(feed_router(record, center=C, windows=WINDOWS))
    with WebServer(app) as web:
        yield f"{web.url}/api/v1", store, record


def auth(secret: str) -> dict:
    return {"Authorization": f"Bearer {secret}"}


def owed(store, leaf: str | None = None) -> list[tuple[str, bytes]]:
    with store.read() as conn:
        rows = conn.execute(select(notices.c.topic, notices.c.payload).order_by(notices.c.id)).all()
    return [(t, bytes(p)) for t, p in rows if leaf is None or t.endswith("/" + leaf)]


def test_a_case_is_published_once_and_the_center_knows_it_at_once(feed):
    url, store, _ = feed
    _, key = create_key(store, "hall")
    r = httpx.put(f"{url}/windows/W01/case", json=case_body(phone=PHONE), headers=auth(key))
    assert r.status_code == 200 and r.headers[PUBLISHED] == "yes"
    msg = r.json()
    assert msg["state"] == "open" and msg["case"]["item_name"] == "居住证办理" and msg["window"] == "W01"
    assert PHONE not in r.text and "phone" not in msg
    [(topic, payload)] = owed(store)
    assert topic == topics.Topics(C, "W01", "-").case and codec.decode("case", payload) == msg
    assert PHONE.encode() not in payload
    with store.read() as conn:
        row = conn.execute(select(cases).where(cases.c.case_id == "SH0001")).first()
        assert (row.window, row.state, row.item_name, row.staff_name, row.opened_at) == (
            "W01", "open", "居住证办理", "王芳", msg["opened_at"])
        assert conn.execute(select(contacts.c.phone)).scalars().all() == [PHONE]
    # The same body again: nothing new is published; the answer is the message already out (same opened_at).
    again = httpx.put(f"{url}/windows/W01/case", json=case_body(phone=PHONE), headers=auth(key))
    assert again.status_code == 200 and again.headers[PUBLISHED] == "no" and again.json() == msg
    assert len(owed(store)) == 1
    # A change (another staff member) is a new message; the case keeps the time it opened.
    moved = httpx.put(f"{url}/windows/W01/case", headers=auth(key),
                      json=case_body(staff={"id": "S0102", "name": "李强"}))
    assert moved.headers[PUBLISHED] == "yes" and moved.json()["opened_at"] == msg["opened_at"]
    assert len(owed(store)) == 2


def test_close_clear_and_duty(feed):
    url, store, _ = feed
    _, key = create_key(store, "hall")
    assert httpx.post(f"{url}/windows/W01/case/close", headers=auth(key)).status_code == 409  # nothing open
    httpx.put(f"{url}/windows/W01/case", json=case_body(phone=PHONE), headers=auth(key))
    assert httpx.post(f"{url}/windows/W01/case/close", json={"id": "OTHER"}, headers=auth(key)).status_code == 409
    closed = httpx.post(f"{url}/windows/W01/case/close", json={"id": "SH0001"}, headers=auth(key))
    assert closed.status_code == 200 and closed.headers[PUBLISHED] == "yes"
    assert closed.json()["state"] == "closed" and closed.json()["case"] == {"id": "SH0001"}
    with store.read() as conn:  # closed unrated with a number: the SMS follow-up is planned at once
        assert conn.execute(select(sms_jobs.c.case_id, sms_jobs.c.state)).all() == [("SH0001", "pending")]
        assert conn.execute(select(cases.c.state)).scalars().all() == ["closed"]
    again = httpx.post(f"{url}/windows/W01/case/close", headers=auth(key))
    assert again.status_code == 200 and again.headers[PUBLISHED] == "no" and again.json() == closed.json()
    assert httpx.delete(f"{url}/windows/W01/case", headers=auth(key)).status_code == 204
    assert httpx.delete(f"{url}/windows/W01/case", headers=auth(key)).headers[PUBLISHED] == "no"
    assert [p for _, p in owed(store, "case")][-1] == b""  # the retained case cleared, once
    assert len(owed(store, "case")) == 3
    duty = {"staff": {"id": "S0101", "name": "王芳", "number": "0101"}, "window_name": "W01 综合受理"}
    d = httpx.put(f"{url}/windows/W01/duty", json=duty, headers=auth(key))
    assert d.status_code == 200 and d.json()["staff"]["name"] == "王芳" and d.headers[PUBLISHED] == "yes"
    assert httpx.put(f"{url}/windows/W01/duty", json=duty, headers=auth(key)).headers[PUBLISHED] == "no"
    nobody = httpx.put(f"{url}/windows/W01/duty", json={"staff": None}, headers=auth(key))
    assert nobody.status_code == 200 and nobody.json()["staff"] is None
    assert [codec.decode("duty", p)["staff"] for _, p in owed(store, "duty")] == [duty["staff"], None]


def test_a_business_systems_key_cannot_touch_another_systems_windows(feed):
    url, store, _ = feed
    _, queue = create_key(store, "queue-a", frozenset({"W01"}))
    _, whole = create_key(store, "hall")
    assert httpx.put(f"{url}/windows/W01/case", json=case_body("SH1"), headers=auth(queue)).status_code == 200
    for call in (lambda h: httpx.put(f"{url}/windows/W02/case", json=case_body("SH2"), headers=h),
                 lambda h: httpx.post(f"{url}/windows/W02/case/close", headers=h),
                 lambda h: httpx.delete(f"{url}/windows/W02/case", headers=h),
                 lambda h: httpx.put(f"{url}/windows/W02/duty", json={"staff": None}, headers=h)):
        assert call(auth(queue)).status_code == 403
    # A case opened at W02 (by the center-wide key) cannot be taken over, nor given a number, by queue-a.
    assert httpx.put(f"{url}/windows/W02/case", json=case_body("SH3"), headers=auth(whole)).status_code == 200
    assert httpx.put(f"{url}/windows/W01/case", json=case_body("SH3"), headers=auth(queue)).status_code == 403
    assert httpx.put(f"{url}/cases/SH3/contact", json={"phone": PHONE}, headers=auth(queue)).status_code == 403
    assert httpx.put(f"{url}/cases/NEVER/contact", json={"phone": PHONE}, headers=auth(queue)).status_code == 404
    assert httpx.put(f"{url}/cases/SH1/contact", json={"phone": PHONE}, headers=auth(queue)).status_code == 204
    assert httpx.put(f"{url}/cases/SH3/contact", json={"phone": PHONE}, headers=auth(whole)).status_code == 204
    with store.read() as conn:
        denied = conn.execute(select(audit.c.who, audit.c.action, audit.c.target)
                              .where(audit.c.action == "api_denied").order_by(audit.c.id)).all()
        assert len(denied) == 6 and {d.who for d in denied} == {"key:queue-a"}
        assert conn.execute(select(cases.c.case_id, cases.c.window).order_by(cases.c.case_id)).all() == [
            ("SH1", "W01"), ("SH3", "W02")]
    assert {t for t, _ in owed(store)} == {topics.Topics(C, w, "-").case for w in ("W01", "W02")}
    assert len(owed(store)) == 2  # nothing a refused call sent was published
    # Unknown window, no key, a wrong key, a revoked key.
    assert httpx.put(f"{url}/windows/W99/case", json=case_body(), headers=auth(whole)).status_code == 404
    r = httpx.put(f"{url}/windows/W01/case", json=case_body())
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.put(f"{url}/windows/W01/case", json=case_body(), headers=auth(whole[:-2] + "zz")).status_code == 401
    revoke_key(store, "queue-a")
    assert httpx.put(f"{url}/windows/W01/case", json=case_body("SH1"), headers=auth(queue)).status_code == 401


@pytest.mark.parametrize("change, field", [
    ({"item_name": ""}, "item_name"), ({"id": "a b"}, "id"), ({"staff": {"id": "S1"}}, "name"),
    ({"phone": "12345"}, "phone"), ({"extra": 1}, "extra"), ({"rating_url": "http://x"}, "rating_url"),
    ({"opened_at": "yesterday"}, "opened_at"), ({"applicant": {"token": "13912345678", "display": "张*"}}, ""),
    ({"item_name": "身份证310101199001011234"}, "")])
def test_invalid_bodies_are_422_with_the_field_and_publish_nothing(feed, change, field):
    url, store, _ = feed
    _, key = create_key(store, "hall")
    r = httpx.put(f"{url}/windows/W01/case", json=case_body(**change), headers=auth(key))
    assert r.status_code == 422, r.text
    assert field in json.dumps(r.json()["detail"])
    assert PHONE not in r.text and owed(store) == []


def test_a_body_over_the_cap_is_413(feed):
    url, store, _ = feed
    _, key = create_key(store, "hall")
    r = httpx.put(f"{url}/windows/W01/case", headers=auth(key), json=case_body(item_name="x" * MAX_BODY))
    assert r.status_code == 413 and owed(store) == []


def test_opening_a_rated_case_again_is_409(feed):
    url, store, record = feed
    _, key = create_key(store, "hall")
    httpx.put(f"{url}/windows/W01/case", json=case_body("SH9"), headers=auth(key))
    with store.write() as conn:
        conn.execute(cases.update().values(state="rated"))
        rating = {"v": 1, "type": "rating", "id": "00000000-0000-4000-8000-000000000001", "device": "t1",
                  "center": C, "window": "W01", "seq": 1, "ts": "2026-03-02T09:13:00+08:00", "kind": "case",
                  "level": "satisfied", "channel": "touch", "case": "SH9", "item_code": "310115-001",
                  "staff": "S0101", "applicant": "ap_5f0c2a9e71b3d846"}
        assert record.accept(conn, codec.validate(rating), 0).first
    r = httpx.put(f"{url}/windows/W01/case", json=case_body("SH9", item_name="别的"), headers=auth(key))
    assert r.status_code == 409 and len(owed(store)) == 1


# ---- hostile bodies ----------------------------------------------------------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=5), max_leaves=12)
FIELD_VALUES = st.one_of(JSON, st.text(max_size=80), st.sampled_from(
    ["", "\n", "W01\n", "\u0000", "\ud800", "13912345678", "310101199001011234", "https://x\ny", "x" * 65,
     "2026-03-02T09:12:05", "2026-13-45T99:00:00+08:00", "../../etc", "张" * 33]))


@st.composite
def hostile_case(draw) -> dict | list | str | None:
    """Mostly the valid body with fields replaced, dropped or added; sometimes any JSON at all."""
    choice = draw(st.integers(0, 5))
    if choice == 0:
        return draw(JSON)
    if choice == 1:  # a duty body, bent
        staff = {"id": "S0101", "name": "王芳", "number": "0101"}
        for leaf in draw(st.lists(st.sampled_from(["id", "name", "number", "photo", "x"]), max_size=2)):
            staff[leaf] = draw(FIELD_VALUES)
        return {"staff": draw(st.sampled_from([staff, None])) if draw(st.booleans()) else draw(FIELD_VALUES),
                "window_name": draw(FIELD_VALUES)}
    body = case_body(draw(st.sampled_from(["SH1", "SH2"])), phone=PHONE)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["id", "item_code", "item_name", "staff", "applicant", "phone", "rating_url",
                                      "opened_at", "staff.id", "staff.name", "staff.number", "staff.photo",
                                      "applicant.token", "applicant.display", "new"]))
        target, _, leaf = where.rpartition(".")
        holder = body[target] if target and isinstance(body.get(target), dict) else body
        if draw(st.booleans()) and leaf in holder:
            del holder[leaf]
        else:
            holder[leaf or where] = draw(FIELD_VALUES)
    return body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=hostile_case(), path=st.sampled_from(["windows/W01/case", "windows/W01/duty", "windows/W01/case/close",
                                                  "cases/SH1/contact", "windows/W01%0A/case"]))
def test_hostile_bodies_never_500_and_never_publish_an_invalid_message(feed, body, path):
    url, store, _ = feed
    if store not in _KEYS:  # one key per store: the fixture lives across hypothesis' examples
        _KEYS[store] = create_key(store, "hostile")[1]
    key = _KEYS[store]
    method = "POST" if path.endswith("close") else "PUT"
    raw = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    r = httpx.request(method, f"{url}/{path}", content=raw, headers={**auth(key), "content-type": "application/json"})
    assert r.status_code in (200, 204, 404, 409, 413, 422), (r.status_code, r.text)
    assert PHONE not in r.text
    for topic, payload in owed(store):
        assert PHONE.encode() not in payload
        if payload:
            kind = topic.rsplit("/", 1)[1]
            assert codec.decode(kind, payload)["window"] == "W01"


_KEYS: "weakref.WeakKeyDictionary[object, str]" = weakref.WeakKeyDictionary()


# ---- end to end: the feed → the center service → the broker → a real terminal ---------------------------

@pytest.fixture
def service(broker, tmp_path):
    o = demo_options(tmp_path / "center", broker.port, 0, center=C)
    o = replace(o, qr_keys={"test": bytes.fromhex(TEST_QR_KEY)}, sms=SmsPolicy(delay_s=0, start="00:00",
                                                                               end="23:59"))
    s = CenterService(o).start()
    app = FastAPI()
    app.include_router(feed_router(s.record, center=C, windows=WINDOWS, wake=s.notices.wake))
    with WebServer(app) as web:
        s.feed_url = f"{web.url}/api/v1"
        yield s
    s.stop()


def test_the_feed_opens_a_case_on_a_real_terminal_and_its_close_brings_the_sms(service, center, make_terminal,
                                                                              tmp_path):
    center.catalog()
    _, key = create_key(service.store, "queue-a", frozenset({"W01"}))
    url = service.feed_url
    duty = {"staff": {"id": "S0101", "name": "王芳", "number": "0101"}, "window_name": "W01 综合受理"}
    assert httpx.put(f"{url}/windows/W01/duty", json=duty, headers=auth(key)).status_code == 200
    t = make_terminal()
    wait_for(lambda: t.online, what="terminal online")
    r = httpx.put(f"{url}/windows/W01/case", json=case_body("SH77", phone=PHONE), headers=auth(key))
    assert r.status_code == 200
    wait_for(lambda: t.state.phase == Phase.CASE and t.state.case.id == "SH77", what="the terminal shows SH77")
    assert t.state.case.item_name == "居住证办理"
    # Retained on the broker exactly as the feed answered, never with the number.
    assert center.messages_on(center.topics.case)[-1] == r.json()
    assert not [tp for tp, p in center.seen if PHONE.encode() in p]
    # Closed unrated: the terminal reports `unrated`, the SMS goes to the spool.
    assert httpx.post(f"{url}/windows/W01/case/close", headers=auth(key)).status_code == 200
    spool = tmp_path / "center" / "sms-spool"
    wait_for(lambda: list(spool.glob("*.json")), timeout=30, what="the SMS in the spool")
    assert [json.loads(p.read_text())["phone"] for p in spool.glob("*.json")] == [PHONE]
    # Cleared: the terminal goes back to idle.
    httpx.put(f"{url}/windows/W01/case", json=case_body("SH78"), headers=auth(key))
    wait_for(lambda: t.state.case is not None and t.state.case.id == "SH78", what="SH78 shown")
    assert httpx.delete(f"{url}/windows/W01/case", headers=auth(key)).status_code == 204
    wait_for(lambda: t.state.phase == Phase.IDLE, what="the window cleared")


def test_the_openapi_document_describes_the_feed(feed):
    url, _, _ = feed
    doc = httpx.get(url.removesuffix("/api/v1") + "/openapi.json").json()
    assert {"/api/v1/windows/{window}/case", "/api/v1/windows/{window}/case/close", "/api/v1/windows/{window}/duty",
            "/api/v1/cases/{case_id}/contact"} <= set(doc["paths"])
    put = doc["paths"]["/api/v1/windows/{window}/case"]["put"]
    assert put["security"] == [{"apiKey": []}] and doc["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    assert doc["components"]["schemas"]["CaseIn"]["examples"][0]["id"] == "SH20260302000017"
    assert "/api/v1/contacts/{center_path}/{case_id}" not in doc["paths"]


def test_the_demo_simulator_runs_its_cases_through_the_feed(service, center):
    import threading

    from devkit.simulator import Simulator
    _, key = create_key(service.store, "sim", frozenset({"W01"}))
    stop = threading.Event()
    sim = Simulator("127.0.0.1", service.options.mqtt_port, C, "W01", hold_s=0.3, gap_s=0.1,
                    feed=service.feed_url.removesuffix("/api/v1"), feed_key=key)
    runner = threading.Thread(target=sim.run, args=(stop,), daemon=True)
    runner.start()
    try:
        wait_for(lambda: [m for m in center.messages_on(center.topics.case) if m["state"] == "closed"],
                 what="a case opened and closed through the feed")
    finally:
        stop.set()
        runner.join(10)
        sim.c.disconnect()
        sim.c.loop_stop()
    duty = wait_for(lambda: center.messages_on(center.topics.duty), what="the duty published by the center")
    assert duty[-1]["staff"]["id"] == "S0101"
    with service.store.read() as conn:
        opened = conn.execute(select(cases.c.case_id)).scalars().all()
        numbers = conn.execute(select(contacts.c.case_id)).scalars().all()
        sent_by_feed = conn.execute(select(notices.c.topic).where(notices.c.topic == center.topics.case)).all()
    assert opened and set(numbers) == set(opened) and sent_by_feed
    assert not [t for t, p in center.seen if b"phone" in p]


def test_what_the_windows_show_can_be_owed_again_after_a_reconnect(feed):
    url, store, _ = feed
    _, key = create_key(store, "hall")
    httpx.put(f"{url}/windows/W01/case", json=case_body("SH1"), headers=auth(key))
    httpx.put(f"{url}/windows/W01/case", json=case_body("SH2"), headers=auth(key))
    httpx.put(f"{url}/windows/W02/case", json=case_body("SH3"), headers=auth(key))
    httpx.delete(f"{url}/windows/W02/case", headers=auth(key))
    httpx.put(f"{url}/windows/W01/duty", json={"staff": None}, headers=auth(key))
    with store.write() as conn:  # another center's and a device topic's rows are not ours to repeat
        conn.execute(notices.insert(), [dict(topic="hcp/v1/C2/window/W01/case", payload=b"{}", retain=1, created=0),
                                        dict(topic="hcp/v1/C1/device/t1/rating", payload=b"{}", retain=0, created=0)])
    assert republish(store, C) == 0  # nothing sent yet: it is all still on its way
    with store.write() as conn:
        conn.execute(notices.update().values(sent_at=1.0))
    before = owed(store)
    assert republish(store, C) == 3
    again = owed(store)[len(before):]
    assert sorted(again) == sorted([(topics.Topics(C, "W01", "-").case, before[1][1]),
                                    (topics.Topics(C, "W02", "-").case, b""),
                                    (topics.Topics(C, "W01", "-").duty, before[4][1])])
    assert codec.decode("case", before[1][1])["case"]["id"] == "SH2"
    assert republish(store, C) == 0


def test_a_rated_case_is_not_owed_again_once_a_case_system_on_mqtt_moved_the_window_on(feed):
    """Mixed mode: the center published SH1 `rated`; the case system then opened SH2 over MQTT. After a
    reconnect the center must not bring SH1 back over SH2."""
    _, store, record = feed
    t = topics.Topics(C, "W01", "-")
    with store.write() as conn:
        conn.execute(notices.insert().values(topic=t.case, retain=1, created=10.0, sent_at=11.0, payload=codec.encode(
            {"v": 1, "type": "case", "center": C, "window": "W01", "state": "rated", "case": {"id": "SH1"},
             "rated_channel": "qr"})))
    assert republish(store, C, now=20.0) == 1   # nothing newer known: what the window showed, owed again
    record.ingest([(t.case, codec.encode(factories.case(C, "W01", "SH2")))], now=30.0)
    with store.write() as conn:
        conn.execute(notices.update().values(sent_at=31.0))
    assert republish(store, C, now=40.0) == 0
