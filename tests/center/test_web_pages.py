"""The phone pages over HTTP against a real Store (SQLite file), the real Desk and the app served by
uvicorn: what each token opens, what a submit stores (and what it refuses, storing nothing), the error
pages, the limits of static codes, the security headers and the size of a first load."""
from __future__ import annotations

import json
import secrets
import socket
import struct
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st
from PIL import Image
from sqlalchemy import select, update
from starlette.requests import Request

from center.desk import Desk
from center.ledger.record import Record
from center.sms.jobs import token_hash
from center.store import Store, sqlite_url, tables
from center.web import links
from center.web.app import CSP, create_app
from center.web.limits import COOKIE, PhoneCookie
from center.web.rate import ERR_REASONS, ERR_TEXT, MAX_TEXT, check_form, clean_text
from center.web.settings import WebSettings
from center.web.server import WebServer
from protocol import qrtoken
from protocol.values import LEVELS

CENTER, OTHER = "pudong", "minhang"
QR_KEY, CODE_KEY, OTHER_KEY = b"q" * 32, b"c" * 32, b"o" * 32
CASE, APPLICANT = "SH20260302000017", "APPLICANT-OPAQUE-7f3a9c"
REASONS = [  # a realistic catalog: the size budget must hold with it
    {"code": "R01", "zh": "等候时间过长", "group": "效率"}, {"code": "R02", "zh": "办理时间过长", "group": "效率"},
    {"code": "R03", "zh": "多次往返才办成", "group": "效率"}, {"code": "R04", "zh": "工作人员态度不好", "group": "态度"},
    {"code": "R05", "zh": "解释说明不清楚", "group": "态度"}, {"code": "R06", "zh": "工作人员不在岗", "group": "态度"},
    {"code": "R07", "zh": "要求提供不必要的材料", "group": "流程"}, {"code": "R08", "zh": "办事指南不清楚", "group": "流程"},
    {"code": "R09", "zh": "系统故障无法办理", "group": "环境"}, {"code": "R10", "zh": "大厅环境嘈杂拥挤", "group": "环境"},
    {"code": "R11", "zh": "未能一次告知所需材料", "group": "流程"}, {"code": "R12", "zh": "其他问题", "group": "其他"},
]
INVALID = "二维码无效"


def seed(store: Store, case: str = CASE, now: float | None = None) -> None:
    """A center with a name, a window, two staff (one revoked), the catalog and one open case."""
    now = time.time() if now is None else now
    with store.write() as conn:
        if conn.execute(select(tables.centers.c.center)).first() is None:
            conn.execute(tables.centers.insert(), [{"center": CENTER, "name": "浦东新区市民中心", "code_gen": 1,
                                                    "updated": now}])
            conn.execute(tables.windows.insert(), [{"center": CENTER, "window": "W01", "name": "1号窗口",
                                                    "updated": now}])
            conn.execute(tables.staff.insert(), [
                {"center": CENTER, "staff_id": "S0101", "name": "张三", "number": "0101", "window": "W01",
                 "title": "综合受理员", "code_gen": 1, "revoked": 0, "updated": now},
                {"center": CENTER, "staff_id": "S0199", "name": "王五", "number": "0199", "window": "W01",
                 "title": "科员", "code_gen": 1, "revoked": 1, "updated": now}])
            conn.execute(tables.catalogs.insert(), [{"center": CENTER, "version": "2026.1",
                                                     "reasons": json.dumps(REASONS, ensure_ascii=False),
                                                     "updated": now}])
        conn.execute(tables.cases.insert(), [{
            "center": CENTER, "case_id": case, "window": "W01", "staff": "S0101", "state": "open",
            "updated": now, "item_code": "310115-0001", "item_name": "居住证办理", "staff_name": "张三",
            "staff_number": "0101", "applicant": APPLICANT, "opened_at": "2026-03-02T09:12:05+08:00"}])


def qr(case: str = CASE, *, center: str = CENTER, key_id: str = "k1", key: bytes = QR_KEY, window: str = "W01",
       staff: str = "S0101", ttl_s: int = 3600, now: float | None = None) -> str:
    return qrtoken.sign(key_id, key, center=center, case=case, window=window, staff=staff,
                        device="rpi-1000000a3f9c2b7e", ttl_s=ttl_s, now=now)


def staff_token(staff: str = "S0101", gen: int = 1, center: str = CENTER) -> str:
    return links.sign_staff("c1", CODE_KEY, center, staff, gen)


def hall_token(gen: int = 1, center: str = CENTER) -> str:
    return links.sign_hall("c1", CODE_KEY, center, gen)


@dataclass
class Site:
    store: Store
    desk: Desk
    settings: WebSettings
    web: WebServer
    client: httpx.Client
    photo_dir: Path

    def ratings(self) -> list[dict]:
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(select(tables.ratings)).mappings()]

    def rows(self, table) -> list[dict]:
        with self.store.read() as conn:
            return [dict(r) for r in conn.execute(select(table)).mappings()]

    def photo_files(self) -> list[Path]:
        return sorted(self.photo_dir.glob("*")) if self.photo_dir.exists() else []


def make_settings(tmp_path: Path, **over) -> WebSettings:
    values = dict(centers=frozenset({CENTER}), qr_keys={"k1": QR_KEY}, static_keys={"c1": CODE_KEY},
                  photo_dir=tmp_path / "photos", cookie_secret=b"s" * 32)
    values.update(over)
    return WebSettings(**values)


@pytest.fixture
def site(tmp_path):
    store = Store(sqlite_url(tmp_path / "center.db"))
    seed(store)
    desk = Desk(Record(store))
    settings = make_settings(tmp_path)
    with WebServer(create_app(desk, settings)) as web, httpx.Client(base_url=web.url, timeout=60, follow_redirects=True) as client:
        yield Site(store, desk, settings, web, client, settings.photo_dir)
    store.close()


def jpeg(size=(640, 480), color=(200, 30, 30)) -> bytes:
    out = BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


def png_bomb(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny PNG whose header declares width × height pixels (IHDR patched, CRC fixed)."""
    out = BytesIO()
    Image.new("L", (1, 1)).save(out, "PNG")
    data = bytearray(out.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17:ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr:ihdr + 17])))
    return bytes(data)


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200


def post_case(site: Site, token: str, level: str = "satisfied", reasons=(), text: str = "", files=(), **kw):
    data = {"t": token, "level": level, "text": text}
    if reasons:
        data["reasons"] = list(reasons)
    return site.client.post("/r", data=data, files=[("photos", f) for f in files] or None, **kw)


# ---- the dynamic QR page ---------------------------------------------------------------------------

def test_case_page_shows_the_case_and_never_the_applicant(site):
    r = site.client.get("/r", params={"t": qr()})
    assert r.status_code == 200
    page = r.text
    for shown in ("浦东新区市民中心", "居住证办理", "1号窗口", "张三", "0101", "2026-03-02", "非常满意", "非常不满意",
                  "等候时间过长", "效率", 'name="photos"', 'accept="image/jpeg,image/png,image/webp"'):
        assert shown in page, shown
    assert APPLICANT not in page and "310115-0001" not in page
    assert page.index("非常满意") < page.index(">满意") < page.index("基本满意") < page.index(">不满意")
    assert "<script" not in page.lower() and "<link" not in page.lower() and "<img" not in page.lower()
    assert len(r.content) <= 30_000, len(r.content)   # first load: HTML with the CSS inlined, one request


def test_security_headers_on_every_response(site):
    for r in (site.client.get("/r", params={"t": qr()}), site.client.get("/r", params={"t": "x"}),
              site.client.get("/nowhere"), site.client.get("/healthz")):
        assert r.headers["content-security-policy"] == CSP
        assert "default-src 'none'" in CSP and "frame-ancestors 'none'" in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in r.headers   # plain HTTP here


def test_hsts_and_secure_cookie_over_https(tmp_path):
    store = Store(sqlite_url(tmp_path / "c.db"))
    seed(store)
    app = create_app(Desk(Record(store)), make_settings(tmp_path, https=True))
    with WebServer(app) as web:
        r = httpx.get(f"{web.url}/p/h/{hall_token()}")
    store.close()
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    cookie = r.headers["set-cookie"].lower()
    assert "secure" in cookie and "httponly" in cookie and "samesite=lax" in cookie


def test_a_good_rating_is_stored_once_and_then_the_case_says_rated(site):
    token = qr()
    r = post_case(site, token, "very_satisfied", text="  办得很快 \x07谢谢\r\n ")
    assert r.status_code == 200 and "谢谢您的评价" in r.text
    assert r.history and r.history[0].status_code == 303   # post-redirect-get: a reload posts nothing
    [row] = site.ratings()
    assert (row["channel"], row["level"], row["case_id"], row["center"]) == ("qr", "very_satisfied", CASE, CENTER)
    assert (row["window"], row["staff"], row["first"]) == ("W01", "S0101", 1)
    assert [n["text"] for n in site.rows(tables.notes)] == ["办得很快 谢谢"]

    again = post_case(site, token, "very_dissatisfied", reasons=["R01"])
    assert again.status_code == 409 and "该办件已评价" in again.text and "感谢您的参与" in again.text
    page = site.client.get("/r", params={"t": token})
    assert page.status_code == 409 and "该办件已评价" in page.text and 'name="level"' not in page.text
    assert len(site.ratings()) == 1


def test_bad_level_without_reasons_comes_back_with_the_message_and_stores_nothing(site):
    r = post_case(site, qr(), "dissatisfied", text="排队很久")
    assert r.status_code == 400
    assert ERR_REASONS in r.text and 'value="dissatisfied" checked' in r.text and "排队很久" in r.text
    assert site.ratings() == []
    r = post_case(site, qr(), "dissatisfied", reasons=["R01", "NOT-IN-CATALOG"])
    assert r.status_code == 400 and site.ratings() == []
    r = post_case(site, qr(), "sort_of_ok")
    assert r.status_code == 400 and "请选择满意程度" in r.text and site.ratings() == []
    r = post_case(site, qr(), "dissatisfied", reasons=["R01", "R04"])
    assert r.status_code == 200
    [row] = site.ratings()
    assert row["level"] == "dissatisfied" and row["reasons"].split(",") == ["R01", "R04"]


def test_text_over_500_characters_is_refused(site):
    r = post_case(site, qr(), text="字" * (MAX_TEXT + 1))
    assert r.status_code == 400 and ERR_TEXT in r.text and site.ratings() == []
    r = post_case(site, qr(), text="字" * MAX_TEXT)
    assert r.status_code == 200 and [n["text"] for n in site.rows(tables.notes)] == ["字" * MAX_TEXT]


def test_every_invalid_token_gets_the_same_page(site):
    with site.store.write() as conn:   # the same case id in a center this service does not answer for
        conn.execute(tables.cases.insert(), [{"center": OTHER, "case_id": CASE, "window": "W01", "staff": "S0101",
                                              "state": "open", "updated": time.time()}])
    token = qr()
    tampered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    other_center = qr(center=OTHER)
    unknown_key = qr(key_id="k9", key=OTHER_KEY)
    wrong_window = qr(window="W09")
    unknown_case = qr("SH-NO-SUCH-CASE")
    malformed = "not-a-token"
    pages = [site.client.get("/r", params={"t": t}) for t in
             (tampered, other_center, unknown_key, wrong_window, unknown_case, malformed)]
    assert {p.status_code for p in pages} == {404}
    assert len({p.text for p in pages}) == 1 and INVALID in pages[0].text
    assert "pudong" not in pages[0].text and "浦东" not in pages[0].text
    assert site.client.get("/r").text == pages[0].text   # no token at all

    expired = site.client.get("/r", params={"t": qr(ttl_s=60, now=time.time() - 3600)})
    assert expired.status_code == 410
    assert "二维码已过期" in expired.text and "请在窗口评价器上评价，或联系工作人员" in expired.text
    # and a POST with any of them stores nothing
    for t in (tampered, other_center, unknown_key, qr(ttl_s=60, now=time.time() - 3600)):
        r = post_case(site, t)
        assert r.status_code in (404, 410)
    assert site.ratings() == []


@given(st.text(max_size=300))
@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_arbitrary_tokens_only_ever_get_the_invalid_page(site, text):
    r = site.client.get("/r", params={"t": text})
    assert r.status_code == 404 and INVALID in r.text


def test_racing_phones_leave_one_rating_and_only_its_photo(site):
    token, n = qr(), 8
    start = threading.Barrier(n)

    def submit(i: int) -> int:
        with httpx.Client(base_url=site.web.url, timeout=60) as client:
            start.wait()
            return client.post("/r", data={"t": token, "level": LEVELS[i % 3].value},
                               files=[("photos", (f"{i}.jpg", jpeg(), "image/jpeg"))]).status_code

    with ThreadPoolExecutor(n) as pool:
        statuses = list(pool.map(submit, range(n)))
    assert sorted(statuses) == [303] + [409] * (n - 1)
    [row] = site.ratings()
    assert row["first"] == 1
    [photo] = site.rows(tables.photos)
    assert photo["rating_id"] == row["id"] and [f.name for f in site.photo_files()] == [photo["name"]]


# ---- limits on what a POST may carry -----------------------------------------------------------------

def test_an_announced_oversize_body_is_refused_before_it_is_read(site):
    with socket.create_connection((site.web.host, site.web.port), timeout=30) as s:
        s.sendall((f"POST /r HTTP/1.1\r\nHost: {site.web.host}:{site.web.port}\r\n"
                   f"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: {40 * 2**20}\r\n\r\n").encode())
        data = b""
        while b"</html>" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert "提交的内容太大" in body.decode("utf-8")


def test_a_chunked_body_growing_past_the_cap_is_cut_off(tmp_path):
    store = Store(sqlite_url(tmp_path / "c.db"))
    seed(store)
    app = create_app(Desk(Record(store)), make_settings(tmp_path, max_body=2**20))

    def body():
        yield b'--x\r\nContent-Disposition: form-data; name="photos"; filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
        for _ in range(40):
            yield b"\xff" * 65536

    with WebServer(app) as web:
        r = httpx.post(f"{web.url}/r", content=body(), headers={"content-type": "multipart/form-data; boundary=x"})
    store.close()
    assert r.status_code == 413 and "提交的内容太大" in r.text


@pytest.mark.parametrize("name, data, says", [
    ("heic", HEIC, "JPEG"),
    ("corrupt", jpeg((800, 600))[:1500], "损坏"),
    ("bomb", png_bomb(), "像素"),
    ("text", b"hello, not a photo at all", "不是照片"),
])
def test_hostile_or_wrong_photos_are_refused_with_a_reason_and_nothing_is_kept(site, name, data, says):
    r = post_case(site, qr(), "satisfied", files=[("good.jpg", jpeg(), "image/jpeg"), (f"{name}.jpg", data, "image/jpeg")])
    assert r.status_code == 400, r.text[-500:]
    assert says in r.text and "请重新选择照片" in r.text and 'value="satisfied" checked' in r.text
    assert site.ratings() == [] and site.rows(tables.photos) == []
    assert site.photo_files() == []


def test_photos_are_stored_with_the_rating(site):
    r = post_case(site, qr(), "satisfied", files=[("a.jpg", jpeg(), "image/jpeg"), ("b.png", jpeg((300, 900)), "image/png")])
    assert r.status_code == 200, r.text[-500:]
    [row] = site.ratings()
    stored = site.rows(tables.photos)
    assert sorted(p["rating_id"] for p in stored) == [row["id"], row["id"]]
    assert sorted(f.name for f in site.photo_files()) == sorted(p["name"] for p in stored)
    assert {(p["width"], p["height"]) for p in stored} == {(640, 480), (300, 900)}


def test_more_than_three_photos_are_refused(site):
    r = post_case(site, qr(), files=[(f"{i}.jpg", jpeg(), "image/jpeg") for i in range(4)])
    assert r.status_code == 400 and "最多上传" in r.text
    assert site.ratings() == [] and site.photo_files() == []


def test_photos_of_a_rating_that_is_not_stored_are_deleted(site):
    token = qr()
    assert post_case(site, token).status_code == 200
    r = post_case(site, token, files=[("a.jpg", jpeg(), "image/jpeg")])
    assert r.status_code == 409
    assert len(site.rows(tables.photos)) == 0 and site.photo_files() == []


def test_a_post_from_another_site_is_refused(site):
    r = post_case(site, qr(), headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and site.ratings() == []
    r = post_case(site, qr(), headers={"Origin": "null"})
    assert r.status_code == 403 and site.ratings() == []
    r = post_case(site, qr(), headers={"Origin": site.web.url})
    assert r.status_code == 200 and len(site.ratings()) == 1


# ---- static codes: staff and hall ------------------------------------------------------------------

def test_staff_code_page_rates_the_person_then_limits_the_phone(site):
    url = f"/p/s/{staff_token()}"
    page = site.client.get(url)
    assert page.status_code == 200
    for shown in ("张三", "0101", "1号窗口", "综合受理员", "非常满意"):
        assert shown in page.text
    assert COOKIE in page.headers["set-cookie"]
    r = site.client.post(url, data={"level": "satisfied"})
    assert r.status_code == 200 and "谢谢您的评价" in r.text
    [row] = site.ratings()
    assert (row["channel"], row["staff"], row["level"], row["center"]) == ("staff_qr", "S0101", "satisfied", CENTER)
    [use] = site.rows(tables.static_uses)
    assert len(use["client"]) == 64 and len(use["addr"]) == 64 and "127.0.0.1" not in use["addr"]

    again = site.client.post(url, data={"level": "very_satisfied"})
    assert again.status_code == 429
    assert "您已评价过" in again.text and "感谢您的参与" in again.text and "12小时" in again.text
    assert len(site.ratings()) == 1


def test_a_bad_staff_rating_needs_a_reason(site):
    url = f"/p/s/{staff_token()}"
    site.client.get(url)
    r = site.client.post(url, data={"level": "very_dissatisfied"})
    assert r.status_code == 400 and ERR_REASONS in r.text and site.ratings() == []
    r = site.client.post(url, data={"level": "very_dissatisfied", "reasons": ["R04"]})
    assert r.status_code == 200 and site.ratings()[0]["reasons"] == "R04"


def test_hall_code_page_rates_the_center(site):
    url = f"/p/h/{hall_token()}"
    page = site.client.get(url)
    assert page.status_code == 200 and "浦东新区市民中心" in page.text and "请为本大厅的服务评价" in page.text
    r = site.client.post(url, data={"level": "basically_satisfied", "text": "大厅很整洁"})
    assert r.status_code == 200
    [row] = site.ratings()
    assert (row["channel"], row["level"]) == ("hall_qr", "basically_satisfied")
    assert site.client.post(url, data={"level": "satisfied"}).status_code == 429


def test_revoked_superseded_or_foreign_static_codes_are_invalid(site):
    invalid = site.client.get("/r", params={"t": "x"}).text
    with site.store.write() as conn:   # a center this service does not answer for, with the same staff id
        conn.execute(tables.centers.insert(), [{"center": OTHER, "name": "闵行区市民中心", "code_gen": 1,
                                                "updated": time.time()}])
        conn.execute(tables.staff.insert(), [{"center": OTHER, "staff_id": "S0101", "name": "赵六", "code_gen": 1,
                                              "revoked": 0, "updated": time.time()}])
    for token in (staff_token("S0199"), staff_token(gen=2), staff_token("S-NOBODY"), staff_token(center=OTHER),
                  hall_token(gen=7), hall_token(center=OTHER), links.sign_staff("zz", OTHER_KEY, CENTER, "S0101", 1),
                  staff_token()[:-1] + ("A" if staff_token()[-1] != "A" else "B")):
        for path in (f"/p/s/{token}", f"/p/h/{token}"):
            r = site.client.get(path)
            assert r.status_code == 404 and r.text == invalid, path
            assert site.client.post(path, data={"level": "satisfied"}).status_code == 404
    # a staff code on the hall path (and back) is not a hall code
    assert site.client.get(f"/p/h/{staff_token()}").text == invalid
    assert site.client.get(f"/p/s/{hall_token()}").text == invalid
    # revoking after the card was printed: bump the generation
    with site.store.write() as conn:
        conn.execute(update(tables.staff).where(tables.staff.c.staff_id == "S0101").values(code_gen=2))
    assert site.client.get(f"/p/s/{staff_token()}").text == invalid
    assert site.client.get(f"/p/s/{staff_token(gen=2)}").status_code == 200
    assert site.ratings() == []


def test_a_post_without_the_cookie_counts_as_a_new_phone_and_gets_one(site):
    url = f"/p/s/{staff_token()}"
    fresh = httpx.post(f"{site.web.url}{url}", data={"level": "satisfied"})
    assert fresh.status_code == 303 and COOKIE in fresh.headers["set-cookie"]
    forged = httpx.post(f"{site.web.url}{url}", data={"level": "satisfied"}, cookies={COOKIE: "0" * 32 + "." + "0" * 32})
    # another "phone" from the same address: allowed by the per-phone limit, counted by the address
    assert forged.status_code == 303
    assert len({u["client"] for u in site.rows(tables.static_uses)}) == 2
    assert len({u["addr"] for u in site.rows(tables.static_uses)}) == 1


# ---- the SMS link -----------------------------------------------------------------------------------

def sms_link_token_for(store: Store, case: str = CASE, expires_in: float = 7 * 86400) -> str:
    """An SMS link as the SMS worker leaves it: the raw token for the message, only its hash stored."""
    token = secrets.token_urlsafe(16)
    with store.write() as conn:
        conn.execute(tables.sms_links.insert(), [{"hash": token_hash(token), "center": CENTER, "case_id": case,
                                                  "expires": time.time() + expires_in, "created": time.time()}])
    return token


def sms_link(site: Site, case: str = CASE, expires_in: float = 7 * 86400) -> str:
    return sms_link_token_for(site.store, case, expires_in)


def test_sms_link_opens_the_case_rates_it_once_and_dies(site):
    token = sms_link(site)
    page = site.client.get(f"/s/{token}")
    assert page.status_code == 200 and "居住证办理" in page.text and APPLICANT not in page.text
    assert token not in page.text.split("<form", 1)[0]
    r = site.client.post(f"/s/{token}", data={"level": "satisfied"})
    assert r.status_code == 200 and "谢谢您的评价" in r.text
    [row] = site.ratings()
    assert (row["channel"], row["case_id"]) == ("sms", CASE)
    for again in (site.client.get(f"/s/{token}"), site.client.post(f"/s/{token}", data={"level": "satisfied"})):
        assert again.status_code == 409 and "该办件已评价" in again.text
    assert len(site.ratings()) == 1


def test_sms_link_dies_when_the_case_is_rated_elsewhere(site):
    token = sms_link(site)
    assert post_case(site, qr()).status_code == 200
    r = site.client.get(f"/s/{token}")
    assert r.status_code == 409 and "该办件已评价" in r.text


def test_expired_and_unknown_sms_links(site):
    old = sms_link(site, expires_in=-60)
    r = site.client.get(f"/s/{old}")
    assert r.status_code == 410 and "链接已过期" in r.text
    assert site.client.post(f"/s/{old}", data={"level": "satisfied"}).status_code == 410
    for bad in (secrets.token_urlsafe(16), "short", "x" * 200):
        r = site.client.get(f"/s/{bad}")
        assert r.status_code == 404 and "链接无效" in r.text
    assert site.ratings() == []


# ---- small pieces: the form check and the cookie -------------------------------------------------------

def test_health_and_unknown_paths(site):
    assert site.client.get("/healthz").text == "ok"
    r = site.client.get("/docs")
    assert r.status_code == 404 and "页面不存在" in r.text   # no API docs on the citizens' site
    assert site.client.get("/openapi.json").status_code == 404


@given(level=st.text(max_size=30) | st.sampled_from([lv.value for lv in LEVELS]),
       reasons=st.lists(st.text(max_size=10) | st.sampled_from([r["code"] for r in REASONS]), max_size=8),
       text=st.text(max_size=700))
def test_the_form_check_never_raises_and_passes_only_clean_forms(level, reasons, text):
    from center.desk import Catalog, Reason
    catalog = Catalog("v", tuple(Reason(r["code"], r["zh"], r["group"]) for r in REASONS))
    filled, error = check_form(level, reasons, text, catalog)
    if not error:
        assert filled.level in {lv.value for lv in LEVELS}
        assert len(filled.text) <= MAX_TEXT and filled.text == filled.text.strip()
        assert all(c == "\n" or ord(c) >= 32 and not 0x7f <= ord(c) < 0xa0 for c in filled.text)
        assert set(filled.reasons) <= {r["code"] for r in REASONS}
        if filled.level in ("dissatisfied", "very_dissatisfied"):
            assert filled.reasons
        else:
            assert filled.reasons == ()


def test_clean_text_drops_controls_and_keeps_line_breaks():
    assert clean_text(" a\x00b\r\nc\u202ed\x1b ") == "ab\ncd"


def _request(cookie_header: str, host: str = "10.1.2.3") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "headers": [(b"cookie", cookie_header.encode("latin-1"))],
                    "client": (host, 5000), "query_string": b""})


@given(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=255), max_size=120))
def test_the_phone_cookie_accepts_only_what_it_signed(value):
    jar = PhoneCookie(b"s" * 32, secure=False)
    assert jar.read(_request(f"{COOKIE}={value}")) is None


def test_the_phone_cookie_round_trip_and_keys():
    from starlette.responses import Response
    jar = PhoneCookie(b"s" * 32, secure=False)
    cid = jar.new_id()
    response = Response()
    jar.set(response, cid)
    value = response.headers["set-cookie"].split(";")[0].split("=", 1)[1]
    assert jar.read(_request(f"{COOKIE}={value}")) == cid
    assert PhoneCookie(b"t" * 32, secure=False).read(_request(f"{COOKIE}={value}")) is None   # another secret
    assert jar.client_key(cid) != jar.client_key(jar.new_id()) and len(jar.client_key(cid)) == 64
    assert jar.addr_key(_request("")) == jar.addr_key(_request("", "10.1.2.3")) != jar.addr_key(_request("", "10.1.2.4"))
    assert "10.1.2.3" not in jar.addr_key(_request(""))
