"""The phone channels end to end, with real parts: a Mosquitto broker, the whole center service (record,
MQTT intake, notices, phone pages on uvicorn, SMS worker with the file gateway), and real terminal cores.

QR → page → record → the terminal shows "rated on the phone"; one case, one rating across every channel;
unrated → SMS in the spool → link → rating → link dead; the phone number never leaves the center."""
from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace

import httpx
import pytest

from center.ledger import query
from center.service import CenterService, demo_options
from center.sms.schedule import SmsPolicy
from device.machine import LevelPressed, Phase
from devkit.broker import Broker
from devkit.terminals import TEST_QR_KEY
from devkit.waiting import wait_for
from protocol import topics
from protocol.values import Channel, Level

PHONE = "13912345678"


@pytest.fixture
def service(broker, tmp_path):
    o = demo_options(tmp_path / "center", broker.port, 0, center="C1")
    o = replace(o, qr_keys={"test": bytes.fromhex(TEST_QR_KEY)},
                sms=SmsPolicy(delay_s=0, start="00:00", end="23:59"))
    s = CenterService(o).start()
    yield s
    s.stop()


def db(service) -> str:
    return service.store.url.split("///", 1)[1]


def open_case(center, terminal, case_id: str) -> str:
    """Publish a case and return the token of the QR code the terminal shows for it."""
    center.case(case_id)
    wait_for(lambda: terminal.state.phase == Phase.CASE and terminal.state.case.id == case_id
             and terminal.state.qr is not None, what=f"{case_id} shown with its QR code")
    return terminal.state.qr.url.split("t=", 1)[1]


@pytest.fixture
def window(service, center, make_terminal):
    center.catalog()
    center.duty()
    t = make_terminal()
    wait_for(lambda: t.online, what="terminal online")
    return t


def test_a_phone_rating_turns_the_terminal_to_rated_on_the_phone(service, center, window):
    token = open_case(center, window, "SH01")
    page = httpx.get(f"{service.web.url}/r", params={"t": token})
    assert page.status_code == 200 and "居住证办理" in page.text and "王芳" in page.text
    assert "张*" not in page.text  # never the applicant's data
    r = httpx.post(f"{service.web.url}/r", data={"t": token, "level": "satisfied", "text": "很快"})
    assert r.status_code == 303
    wait_for(lambda: window.state.phase == Phase.RATED_ELSEWHERE, what="rated on the phone")
    [(rid, device, channel, first, kind)] = query(db(service), "SELECT id, device, channel, first, kind FROM ratings")
    assert (device, channel, first, kind) == ("center-web", "qr", 1, "case")
    assert query(db(service), "SELECT text FROM notes WHERE rating_id=?", (rid,)) == [("很快",)]
    # The case is published rated; the record is owed to the city like every rating (docs/protocol.md §14).
    assert center.messages_on(center.topics.case)[-1]["state"] == "rated"
    assert query(db(service), "SELECT state FROM city_delivery WHERE rating_id=?", (rid,)) == [("pending",)]
    again = httpx.get(f"{service.web.url}/r", params={"t": token})
    assert again.status_code == 409 and "已评价" in again.text


def test_two_phones_and_a_key_press_racing_on_one_case_leave_one_first_rating(service, center, window):
    token = open_case(center, window, "SH02")
    answers: list[int] = []
    go = threading.Barrier(7)

    def phone() -> None:
        go.wait()
        answers.append(httpx.post(f"{service.web.url}/r", data={"t": token, "level": "very_satisfied"}).status_code)

    threads = [threading.Thread(target=phone) for _ in range(6)]
    for th in threads:
        th.start()
    go.wait()
    window.submit(LevelPressed(Level.SATISFIED, Channel.KEYS))
    for th in threads:
        th.join()
    wait_for(lambda: window.state.phase in (Phase.THANKS, Phase.RATED_ELSEWHERE, Phase.IDLE),
             what="the key press committed, or pre-empted by the phone")
    wait_for(lambda: window.snapshot.pending == 0, what="the terminal's outbox delivered")
    firsts = query(db(service), "SELECT channel FROM ratings WHERE case_id='SH02' AND first=1")
    assert len(firsts) == 1
    phones_stored = query(db(service), "SELECT count(*) FROM ratings WHERE case_id='SH02' AND device='center-web'")
    assert phones_stored[0][0] <= 1 and answers.count(303) == phones_stored[0][0]
    assert all(a in (303, 409) for a in answers)


def test_an_unrated_case_gets_one_sms_whose_link_rates_once(service, center, window, tmp_path):
    feed = f"{service.web.url}/api/v1/contacts/C1/SH03"
    key = service.options.feed_key.hex()
    assert httpx.put(feed, json={"phone": PHONE}).status_code == 401
    assert httpx.put(feed, json={"phone": "12345"}, headers={"Authorization": f"Bearer {key}"}).status_code == 400
    assert httpx.put(feed, json={"phone": f"+86 {PHONE}"}, headers={"Authorization": f"Bearer {key}"}
                     ).status_code == 204
    open_case(center, window, "SH03")
    center.case("SH03", "closed")  # closed at the center without a rating: the terminal reports `unrated`
    spool = tmp_path / "center" / "sms-spool"
    wait_for(lambda: list(spool.glob("*.json")), timeout=30, what="the SMS in the spool")
    [message] = [json.loads(p.read_text()) for p in spool.glob("*.json")]
    assert message["phone"] == PHONE and len(message["text"]) <= 70
    link = message["text"][message["text"].index("http"):]
    assert link.startswith(f"{service.options.public_url}/s/")
    # (the spool file is written before the job is marked sent)
    wait_for(lambda: query(db(service), "SELECT state FROM sms_jobs") == [("sent",)], what="the job marked sent")
    form = httpx.get(link)
    assert form.status_code == 200 and "居住证办理" in form.text
    r = httpx.post(link, data={"level": "basically_satisfied"})
    assert r.status_code == 303
    assert query(db(service), "SELECT channel, first FROM ratings WHERE case_id='SH03'") == [("sms", 1)]
    dead = httpx.get(link)
    assert dead.status_code in (409, 410) and "已评价" in dead.text
    assert httpx.post(link, data={"level": "satisfied"}).status_code in (409, 410)
    assert len(query(db(service), "SELECT id FROM ratings WHERE case_id='SH03'")) == 1


def test_a_case_rated_at_the_terminal_sends_no_sms_and_its_phone_page_says_rated(service, center, window):
    key = service.options.feed_key.hex()
    assert httpx.put(f"{service.web.url}/api/v1/contacts/C1/SH04", json={"phone": PHONE},
                     headers={"Authorization": f"Bearer {key}"}).status_code == 204
    token = open_case(center, window, "SH04")
    window.submit(LevelPressed(Level.SATISFIED, Channel.TOUCH))
    wait_for(lambda: query(db(service), "SELECT first FROM ratings WHERE case_id='SH04'") == [(1,)],
             what="the terminal's rating stored")
    center.case("SH04", "closed")
    page = httpx.get(f"{service.web.url}/r", params={"t": token})
    assert page.status_code == 409 and "已评价" in page.text
    assert query(db(service), "SELECT count(*) FROM sms_jobs") == [(0,)]


def test_the_phone_number_never_leaves_the_center(service, center, window, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    key = service.options.feed_key.hex()
    httpx.put(f"{service.web.url}/api/v1/contacts/C1/SH05", json={"phone": PHONE},
              headers={"Authorization": f"Bearer {key}"})
    open_case(center, window, "SH05")
    center.case("SH05", "closed")
    wait_for(lambda: list((tmp_path / "center" / "sms-spool").glob("*.json")), timeout=30, what="SMS spooled")
    assert not [t for t, p in center.seen if PHONE.encode() in p], "on MQTT"
    assert caplog.records and PHONE not in caplog.text, "in a log"
    assert not [p for p in (tmp_path / "t1").rglob("*") if p.is_file() and PHONE.encode() in p.read_bytes()]


def test_a_rating_made_while_the_broker_is_down_reaches_the_terminal_when_it_is_back(tmp_path, center, window,
                                                                                   service, broker):
    token = open_case(center, window, "SH06")
    port = broker.port
    broker.stop()
    r = httpx.post(f"{service.web.url}/r", data={"t": token, "level": "satisfied"})
    assert r.status_code == 303  # stored: the notice waits in the record
    assert query(db(service), "SELECT count(*) FROM notices WHERE sent_at IS NULL")[0][0] >= 1
    (tmp_path / "broker2").mkdir()
    b = Broker(port=port, workdir=str(tmp_path / "broker2")).start()
    try:
        wait_for(lambda: window.state.phase == Phase.RATED_ELSEWHERE, timeout=60, what="rated, after the outage")
        wait_for(lambda: query(db(service), "SELECT count(*) FROM notices WHERE sent_at IS NULL") == [(0,)],
                 what="every notice acknowledged")
    finally:
        b.stop()
