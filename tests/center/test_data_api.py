"""The data API and the supervisors' ratings pages against the real app (uvicorn on a free port), on SQLite
and PostgreSQL: who may read what, pagination, CSV and JSON exports, summaries, errors, no applicant data."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from sqlalchemy import select

from center import accounts, apikeys
from center.desk import Desk
from center.ledger.record import Record
from center.queries import COLUMNS, Queries
from center.store.tables import audit
from center.web import auth
from center.web.app import create_app
from center.web.auth import SESSION_COOKIE, SignInRequired
from center.web.console.ratings import ratings_router
from center.web.data import data_router
from center.web.server import WebServer
from center.web.settings import WebSettings
from tests.center.test_queries import APPLICANT, MONTH, NOTE, at, seed

PASSWORD = "correct horse battery"


@dataclass
class Site:
    store: object
    url: str
    keys: dict[str, str]        # name → secret
    sessions: dict[str, str]    # user name → session token

    def get(self, path: str, who: str | None = None, **params) -> httpx.Response:
        headers, cookies = {}, {}
        if who in self.keys:
            headers["Authorization"] = f"Bearer {self.keys[who]}"
        elif who in self.sessions:
            cookies[SESSION_COOKIE] = self.sessions[who]
        with httpx.Client(base_url=self.url, timeout=60, cookies=cookies) as client:
            return client.get(path, params=params, headers=headers)


@pytest.fixture
def site(store, tmp_path):
    seed(store)
    settings = WebSettings(centers=frozenset({"C001"}), qr_keys={"k1": b"q" * 32}, static_keys={"c1": b"c" * 32},
                           photo_dir=tmp_path / "photos", cookie_secret=b"s" * 32)
    app = create_app(Desk(Record(store)), settings)
    queries = Queries(store, "Asia/Shanghai")
    app.add_exception_handler(SignInRequired, auth.sign_in_redirect)
    app.include_router(data_router(queries, centers=frozenset({"C001"})))
    app.include_router(ratings_router(queries, "C001"))
    keys = {"all": apikeys.create_key(store, "all")[1],
            "w02": apikeys.create_key(store, "w02", frozenset({"W02"}))[1]}
    accounts.create_user(store, "boss", PASSWORD, "admin")
    accounts.create_user(store, "sup", PASSWORD, "supervisor", frozenset({"W02"}))
    accounts.create_user(store, "aud", PASSWORD, "auditor")
    sessions = {name: accounts.start_session(store, name)[0] for name in ("boss", "sup", "aud")}
    with WebServer(app) as web:
        yield Site(store, web.url, keys, sessions)


def ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["rows"]]


ALL_C001 = ["a", "b", "c", "f", "g", "d", "e", "h", "i"]


def test_nobody_reads_without_a_key_or_a_session(site):
    for path in ("/api/v1/ratings", "/api/v1/ratings.csv", "/api/v1/ratings.json", "/api/v1/summary"):
        r = site.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer" and "error" in r.json()
        with httpx.Client(base_url=site.url) as client:
            assert client.get(path, headers={"Authorization": "Bearer hcp_" + "x" * 43}).status_code == 401
        with httpx.Client(base_url=site.url, cookies={SESSION_COOKIE: "forged"}) as client:
            assert client.get(path).status_code == 401
    apikeys.revoke_key(site.store, "all")
    assert site.get("/api/v1/ratings", "all").status_code == 401


def test_a_center_key_sees_every_window_a_system_key_only_its_own(site):
    assert ids(site.get("/api/v1/ratings", "all", center="C001")) == ALL_C001
    assert ids(site.get("/api/v1/ratings", "all")) == ALL_C001          # not C002's j: another center's
    assert ids(site.get("/api/v1/ratings", "all", center="C002")) == []
    assert ids(site.get("/api/v1/ratings", "w02", center="C001")) == ["f", "g", "h"]
    assert ids(site.get("/api/v1/ratings", "w02", window="W01")) == []          # not W01's rows
    by_window = site.get("/api/v1/summary", "w02", by="window", center="C001").json()["groups"]
    assert [g["key"] for g in by_window] == ["W02"]


def test_a_supervisor_sees_their_windows_admins_and_auditors_all(site):
    assert ids(site.get("/api/v1/ratings", "sup", center="C001")) == ["f", "g", "h"]
    assert ids(site.get("/api/v1/ratings", "aud", center="C001")) == ALL_C001
    assert ids(site.get("/api/v1/ratings", "boss", center="C001")) == ALL_C001
    body = site.get("/api/v1/ratings.csv", "sup").content.decode("utf-8-sig")
    assert [line[0] for line in csv.reader(io.StringIO(body, newline=""))][1:] == ["f", "g", "h"]


def test_no_applicant_data_in_any_output(site):
    outputs = [site.get(path, who, **params).content
               for who in ("all", "sup", "boss")
               for path, params in (("/api/v1/ratings", {"limit": "1000"}), ("/api/v1/ratings.csv", {}),
                                    ("/api/v1/ratings.csv", {"headers": "zh"}), ("/api/v1/ratings.json", {}),
                                    ("/api/v1/summary", {"by": "staff"}), ("/console/ratings", {}),
                                    ("/console/ratings/report", {"month": "2026-11"}))]
    assert all(APPLICANT.encode() not in body for body in outputs)
    assert all(b"applicant" not in body for body in outputs)


def test_pages_follow_the_cursor_to_the_end(site):
    seen, cursor = [], None
    for _ in range(10):
        params = {"center": "C001", "limit": "4"} | ({"cursor": cursor} if cursor else {})
        body = site.get("/api/v1/ratings", "all", **params).json()
        seen += [r["id"] for r in body["rows"]]
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == ALL_C001


def test_filters_over_http(site):
    assert ids(site.get("/api/v1/ratings", "all", **{"from": "2026-11-04", "to": "2026-11-04"})) == ["c", "f", "g"]
    assert ids(site.get("/api/v1/ratings", "all", level="dissatisfied,very_dissatisfied", center="C001")) == \
        ["g", "d", "e", "h"]
    assert ids(site.get("/api/v1/ratings", "all", channel="sms")) == ["h"]
    assert ids(site.get("/api/v1/ratings", "all", staff="S2", item="I2")) == ["f", "g", "h"]


@pytest.mark.parametrize("params", [{"from": "2026-13-01"}, {"level": "good"}, {"limit": "0"}, {"limit": "5000"},
                                    {"cursor": "not-a-cursor"}, {"window": "W01;--"}, {"to": "x"}])
def test_wrong_parameters_get_a_json_400(site, params):
    r = site.get("/api/v1/ratings", "all", **params)
    assert r.status_code == 400 and r.headers["content-type"].startswith("application/json")
    assert r.json()["error"]


def test_summary_and_its_errors(site):
    groups = {g["key"]: g for g in site.get("/api/v1/summary", "all", by="staff", center="C001",
                                            **{"from": "2026-11-01", "to": "2026-11-30"}).json()["groups"]}
    assert (groups["S1"]["total"], groups["S1"]["satisfaction_rate"], groups["S1"]["bad_rate"]) == (4, 0.75, 0.25)
    assert (groups["S2"]["total"], groups["S2"]["bad_rate"]) == (3, 0.6667)
    days = site.get("/api/v1/summary", "all", by="day", center="C001").json()["groups"]
    assert [d["key"] for d in days] == ["2026-11-03", "2026-11-04", "2026-11-05", "2026-11-30", "2026-12-01"]
    r = site.get("/api/v1/summary", "all", by="applicant")
    assert r.status_code == 400 and "by" in r.json()["error"]


def test_csv_export_opens_in_excel_and_matches_the_json_export(site):
    r = site.get("/api/v1/ratings.csv", "all", center="C001")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    assert r.content.startswith(b"\xef\xbb\xbf")
    lines = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"), newline="")))
    assert lines[0] == [name for name, _ in COLUMNS]
    exported = json.loads(site.get("/api/v1/ratings.json", "all", center="C001").content)
    assert [row["id"] for row in exported] == ALL_C001 == [line[0] for line in lines[1:]]
    note = [name for name, _ in COLUMNS].index("note")
    assert lines[1:][ALL_C001.index("h")][note] == NOTE == exported[ALL_C001.index("h")]["note"]
    zh = site.get("/api/v1/ratings.csv", "all", center="C001", headers="zh").content.decode("utf-8-sig")
    assert zh.splitlines()[0].startswith("评价编号,中心,窗口") and "非常满意" in zh
    assert site.get("/api/v1/ratings.csv", "all", headers="fr").status_code == 400
    assert json.loads(site.get("/api/v1/ratings.json", "all", center="C009").content) == []


def test_exports_are_audited(site):
    site.get("/api/v1/ratings.csv", "sup", window="W02")
    site.get("/api/v1/ratings.json", "w02")
    with site.store.read() as conn:
        got = [(r.who, r.action, r.target, r.detail) for r in conn.execute(
            select(audit).where(audit.c.action == "export").order_by(audit.c.id))]
    assert got == [("user:sup", "export", "ratings.csv", "window=W02"), ("key:w02", "export", "ratings.json", "")]


def test_the_api_is_in_the_openapi_document(site):
    paths = httpx.get(site.url + "/api/openapi.json").json()["paths"]
    for path in ("/api/v1/ratings", "/api/v1/ratings.csv", "/api/v1/ratings.json", "/api/v1/summary"):
        assert path in paths
    names = {p["name"] for p in paths["/api/v1/ratings"]["get"]["parameters"]}
    assert {"from", "to", "window", "staff", "item", "level", "channel", "cursor", "limit"} <= names
    assert not any(p.startswith("/console") for p in paths)


def test_today_page_reloads_itself_and_shows_only_the_supervisors_windows(site):
    with httpx.Client(base_url=site.url) as client:
        r = client.get("/console/ratings")
        assert r.status_code == 303 and r.headers["location"] == "/console/login"
    r = site.get("/console/ratings", "sup")
    assert r.status_code == 200 and r.headers["refresh"] == "30"
    assert '<meta http-equiv="refresh" content="30">' in r.text and "<script" not in r.text
    assert "今日评价" in r.text


def test_monthly_report_page_has_the_hand_counted_figures(site):
    r = site.get("/console/ratings/report", "boss", month="2026-11")
    assert r.status_code == 200
    assert "张三" in r.text and "李四" in r.text and "75.0%" in r.text and "66.7%" in r.text
    assert "/api/v1/ratings.csv?center=C001&amp;from=2026-11-01&amp;to=2026-11-30&amp;headers=zh" in r.text
    mine = site.get("/console/ratings/report", "sup", month="2026-11").text
    assert "李四" in mine and "张三" not in mine
    assert site.get("/console/ratings/report", "sup", month="2026-13").status_code == 400


def test_todays_ratings_appear_on_the_page(site):
    import time
    from sqlalchemy import insert
    from center.store.tables import ratings
    from tests.center.test_queries import row
    now = time.time()
    with site.store.write() as conn:
        conn.execute(insert(ratings), [row("today-w02", now, window="W02", staff="S2", level="dissatisfied",
                                           reasons="R1"),
                                       row("today-w01", now, window="W01", staff="S1", level="satisfied")])
    mine = site.get("/console/ratings", "sup").text
    assert "不满意" in mine and "态度不好" in mine and "W02" in mine and "W01" not in mine
    everyone = site.get("/console/ratings", "aud").text
    assert "W01" in everyone and "W02" in everyone


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.sampled_from(["from", "to", "window", "level", "cursor", "limit", "by", "channel"]),
                       st.text(max_size=40)))
def test_any_query_string_gets_json_200_or_400(site, params):
    for path in ("/api/v1/ratings", "/api/v1/summary"):
        r = site.get(path, "all", **params)
        assert r.status_code in (200, 400) and r.headers["content-type"].startswith("application/json")


@pytest.mark.timeout(120)   # the bug this guards against was a deadlock: fail, not hang
def test_clients_leaving_mid_export_do_not_use_up_the_database(site):
    """A client that hangs up after the first bytes frees its connection: more such clients than the
    pool has connections, then a full export still works."""
    import time
    from sqlalchemy import insert
    from center.store.tables import ratings
    from tests.center.test_queries import row
    base = at("2026-10-01")
    with site.store.write() as conn:
        conn.execute(insert(ratings), [row(f"bulk{n:05d}", base + n, seq=1000 + n, window="W02") for n in range(20000)])
    for _ in range(20):
        with httpx.Client(base_url=site.url, timeout=60) as client:
            bearer = {"Authorization": f"Bearer {site.keys['all']}"}
            with client.stream("GET", "/api/v1/ratings.csv", headers=bearer) as r:
                assert r.status_code == 200
                next(r.iter_bytes())
    time.sleep(0.5)
    body = site.get("/api/v1/ratings.csv", "all").content
    in_c001 = len(MONTH) - 1   # not j (center C002)
    assert body.count(b"\n") == 20000 + in_c001 + 1 + NOTE.count("\n")
