"""The supervisor's follow-up pages on a real server (uvicorn on a free loopback port, httpx as the browser):
a signed-in supervisor sees only their windows' follow-ups, overdue ones highlighted, the rating without
the applicant, and takes steps by POST with the session's CSRF token (audited); an auditor only reads."""
from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import insert, select

from center.accounts import create_user, start_session
from center.followup import store as fstore
from center.store import Store
from center.store.tables import audit, notes
from center.web.auth import SignInRequired, sign_in_redirect
from center.web.console.followups import router
from center.web.server import WebServer
from tests.center.test_followup_store import APPLICANT, DAY, NOW, rating


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def site(store: Store):
    create_user(store, "sup1", "password-123456", "supervisor", frozenset({"W1"}), now=NOW)
    create_user(store, "aud", "password-123456", "auditor", now=NOW)
    app = FastAPI()
    app.state.store, app.state.clock = store, Clock(NOW + 60)
    app.add_exception_handler(SignInRequired, sign_in_redirect)
    app.include_router(router)
    server = WebServer(app).start()
    yield server, app
    server.stop()


def client(server: WebServer, store: Store, name: str | None) -> tuple[httpx.Client, str]:
    c = httpx.Client(base_url=server.url, follow_redirects=False)
    csrf = ""
    if name:
        token, csrf = start_session(store, name)
        c.cookies.set("hcp_s", token)
    return c, csrf


def test_signed_out_is_sent_to_sign_in(site, store: Store) -> None:
    server, _ = site
    c, _ = client(server, store, None)
    r = c.get("/console/followups")
    assert r.status_code == 303 and r.headers["location"] == "/console/login"
    assert c.post("/console/followups/x/step", data={"action": "contact"}).status_code == 303


def test_a_supervisor_sees_only_their_windows_with_overdue_highlighted(site, store: Store) -> None:
    server, app = site
    mine = rating(store, window="W1")
    theirs = rating(store, window="W2", case="K2")
    c, _ = client(server, store, "sup1")
    page = c.get("/console/followups")
    assert page.status_code == 200
    assert mine["id"] in page.text and theirs["id"] not in page.text
    assert not re.search(r'class="followup overdue"', page.text)
    assert c.get(f"/console/followups/{theirs['id']}").status_code == 404
    app.state.clock.now = NOW + 2 * DAY          # the contact clock ran out at the end of Tuesday
    page = c.get("/console/followups")
    assert re.search(rf'class="followup overdue" data-id="{mine["id"]}"', page.text) and "超期：联系核实" in page.text
    assert mine["id"] in c.get("/console/followups?show=overdue").text
    assert mine["id"] not in c.get("/console/followups?show=closed").text
    assert c.get("/console/followups?show=bogus").status_code == 422
    aud, _ = client(server, store, "aud")
    assert theirs["id"] in aud.get("/console/followups").text


def test_the_detail_shows_the_rating_never_the_applicant(site, store: Store) -> None:
    server, _ = site
    r = rating(store)
    with store.write() as conn:
        conn.execute(insert(notes).values(rating_id=r["id"], text="<b>窗口无人</b>"))
    c, _ = client(server, store, "sup1")
    page = c.get(f"/console/followups/{r['id']}")
    assert page.status_code == 200
    assert "非常不满意" in page.text and "&lt;b&gt;窗口无人&lt;/b&gt;" in page.text and "0 张" in page.text
    assert "R1" in page.text and "R9" in page.text
    assert "2026-12-01 24:00" in page.text and "2026-12-07 24:00" in page.text   # end of Tuesday; 5th working day
    assert APPLICANT not in page.text and "SH77" not in page.text
    assert 'value="contact"' in page.text and 'value="answer"' not in page.text


def test_steps_need_the_csrf_token_and_are_audited(site, store: Store) -> None:
    server, app = site
    r = rating(store)
    url = f"/console/followups/{r['id']}"
    c, csrf = client(server, store, "sup1")
    assert c.post(url + "/step", data={"action": "contact"}).status_code == 403
    assert c.post(url + "/step", data={"action": "contact", "csrf": "wrong"}).status_code == 403
    assert c.post(url + "/step", data={"action": "contact", "csrf": csrf},
                  headers={"Origin": "https://evil.example"}).status_code == 403
    done = c.post(url + "/step", data={"action": "contact", "csrf": csrf, "note": "已电话联系"})
    assert done.status_code == 303 and done.headers["location"] == url
    refused = c.post(url + "/step", data={"action": "rectify", "csrf": csrf, "note": "x"})
    assert refused.status_code == 409 and "cannot rectify a follow-up that is contacted" in refused.text
    assert c.post(url + "/step", data={"action": "answer", "csrf": csrf}).status_code == 409   # note required
    assert c.post(url + "/note", data={"text": "群众表示理解", "csrf": csrf}).status_code == 303
    page = c.get(url).text
    assert "已电话联系" in page and "群众表示理解" in page and "sup1" in page
    with store.read() as conn:
        assert fstore.get(conn, r["id"]).state == "contacted"
        lines = conn.execute(select(audit.c.who, audit.c.action, audit.c.target).order_by(audit.c.id)).all()
    assert [tuple(x) for x in lines] == [("sup1", "followup.contact", r["id"]), ("sup1", "followup.note", r["id"])]


def test_an_auditor_reads_but_cannot_act_and_others_windows_stay_hidden(site, store: Store) -> None:
    server, _ = site
    r = rating(store, window="W2", case="K2")
    aud, csrf = client(server, store, "aud")
    page = aud.get(f"/console/followups/{r['id']}")
    assert page.status_code == 200 and 'name="action"' not in page.text
    assert aud.post(f"/console/followups/{r['id']}/step", data={"action": "contact", "csrf": csrf}).status_code == 403
    sup, csrf = client(server, store, "sup1")
    assert sup.post(f"/console/followups/{r['id']}/step", data={"action": "contact", "csrf": csrf}).status_code == 404
    assert sup.post(f"/console/followups/{r['id']}/note", data={"text": "x", "csrf": csrf}).status_code == 404
    with store.read() as conn:
        assert fstore.get(conn, r["id"]).state == "open"


def test_the_list_pages_by_a_cursor(site, store: Store, monkeypatch) -> None:
    from center.web.console import followups as pages
    monkeypatch.setattr(pages, "PAGE", 2)
    server, _ = site
    made = [rating(store, case=f"K{i}", now=NOW + (i // 2)) for i in range(5)]   # two share each second
    c, _ = client(server, store, "sup1")
    seen, url = [], "/console/followups?show=all"
    for _ in range(5):
        page = c.get(url)
        assert page.status_code == 200
        seen += re.findall(r'data-id="([^"]+)"', page.text)
        more = re.search(r'class="more" href="([^"]+)"', page.text)
        if not more:
            break
        url = more.group(1).replace("&amp;", "&")
    assert sorted(seen) == sorted(r["id"] for r in made) and len(seen) == 5
    assert c.get("/console/followups?after=1e9_x").status_code == 422
