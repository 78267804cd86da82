"""The staff console on the center's web app (uvicorn, a real Store, the real pairing service and broker):
pages and actions refuse unauthenticated requests, forged forms and the wrong role; sign-in cookies and
sign-out; every action lands in the audit log."""
from __future__ import annotations

import contextlib
import http.client
import re
import ssl
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest

from center import accounts
from center.desk import Desk
from center.ledger.record import Record
from center.store import Store, sqlite_url
from center.web.app import create_app
from center.web.console import SERVER_LIMITS, install
from center.web.server import WebServer
from center.web.settings import WebSettings
from tests.provisioning.conftest import STAFF_PASSWORD, STAFF_USER, code_of, paired_idle

AUDITOR, SUPERVISOR = "lisi", "zhaoliu"


@dataclass
class Console:
    web: WebServer
    store: Store
    scheme: str = "http"

    @property
    def port(self) -> int:
        return self.web.port

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.web.port}"


def settings_for(tmp_path: Path, https: bool = False) -> WebSettings:
    return WebSettings(centers=frozenset({"C1"}), qr_keys={}, static_keys={"s1": b"s" * 32},
                       photo_dir=tmp_path / "photos", cookie_secret=b"c" * 32, https=https)


@contextlib.contextmanager
def serve_console(prov, store: Store, tmp_path: Path, *, tls: tuple[str, str] | None = None,
                  forwarded_allow_ips: str = "127.0.0.1", users: bool = True):
    """The app as the center service builds it (phone pages + console) on a free port, with an admin
    (STAFF_USER), an auditor and a supervisor of W01."""
    if users:
        accounts.create_user(store, STAFF_USER, STAFF_PASSWORD, "admin")
        accounts.create_user(store, AUDITOR, STAFF_PASSWORD, "auditor")
        accounts.create_user(store, SUPERVISOR, STAFF_PASSWORD, "supervisor", frozenset({"W01"}))
    settings = settings_for(tmp_path, https=tls is not None)
    app = create_app(Desk(Record(store)), settings)
    install(app, prov, store, settings)
    options = dict(SERVER_LIMITS, proxy_headers=True, forwarded_allow_ips=forwarded_allow_ips, server_header=False)
    if tls:
        options.update(ssl_certfile=tls[0], ssl_keyfile=tls[1])
    with WebServer(app, **options) as web:
        yield Console(web, store, "https" if tls else "http")


@pytest.fixture
def console_app(site, tmp_path):
    store = Store(sqlite_url(tmp_path / "center.db"))
    with serve_console(site.prov, store, tmp_path) as c:
        yield c
    store.close()


class Http:
    """A cookie-keeping HTTP(S) client that does not follow redirects (we check each answer)."""

    def __init__(self, port: int, ca: str | None = None, headers: dict | None = None):
        self.port, self.ca, self.extra = port, ca, headers or {}
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None,
                cookies: bool = True) -> tuple[int, dict[str, str], str]:
        if self.ca:
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=30,
                                               context=ssl.create_default_context(cafile=self.ca))
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        h = {"Host": f"127.0.0.1:{self.port}", **self.extra, **(headers or {})}
        if cookies and self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form, doseq=True)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body, h)
        r = conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        for raw in r.headers.get_all("Set-Cookie") or []:
            for k, m in SimpleCookie(raw).items():
                if m["max-age"] == "0":
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = m.value
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text

    def login(self, user: str = STAFF_USER, password: str = STAFF_PASSWORD) -> int:
        _, _, page = self.request("GET", "/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        return self.request("POST", "/console/login", {"csrf": csrf, "user": user, "password": password})[0]

    def csrf(self, path: str = "/console/") -> str:
        _, _, page = self.request("GET", path)
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_pages_and_actions_refuse_unauthenticated_requests(console_app, site, enrol):
    t = enrol("u1")
    code = code_of(t)
    h = Http(console_app.port)
    for path in ("/console/", "/console/audit", "/console/users", "/console/pair", "/console/nope"):
        status, headers, _ = h.request("GET", path)
        assert (status, headers.get("location")) == (303, "/console/login") or (path, status) == (
            "/console/nope", 404), path
    for path, form in (("/console/pair", {"code": code, "window": "W01"}),
                       ("/console/action", {"op": "revoke", "device": "u1", "confirm": "yes"}),
                       ("/console/users", {"name": "mallory", "password": "x" * 12, "role": "admin"}),
                       ("/console/logout", {})):
        assert h.request("POST", path, form)[0] in (303, 403), path
    h.cookies["hcp_s"] = "guessed-token"
    assert h.request("POST", "/console/pair", {"code": code, "window": "W01", "csrf": "x"})[0] in (303, 403)
    assert h.request("GET", "/console/")[0] == 303
    assert site.reg.device("u1") is None and t.mode == "enrolling"
    assert accounts.user(console_app.store, "mallory") is None


def test_forged_forms_are_refused_and_a_real_one_works(console_app, site, enrol):
    t = enrol("u2")
    code = code_of(t)
    h = Http(console_app.port)
    assert h.login() == 303
    status, headers, page = h.request("GET", "/console/")
    assert status == 200 and "u2" in page
    assert "default-src 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert headers["cache-control"] == "no-store" and "strict-transport-security" not in headers  # plain http
    assert h.cookies["hcp_s"]
    csrf = h.csrf()
    form = {"code": code, "window": "W01"}
    assert h.request("POST", "/console/pair", form)[0] == 403                                   # no token
    assert h.request("POST", "/console/pair", {**form, "csrf": csrf[:-1] + ("B" if csrf[-1] == "A" else "A")})[0] == 403
    assert h.request("POST", "/console/pair", {**form, "csrf": csrf},                            # other site
                     headers={"Origin": "http://evil.example"})[0] == 403
    assert h.request("POST", "/console/pair", {**form, "csrf": csrf}, headers={"Origin": "null"})[0] == 403
    other = Http(console_app.port)                                      # another signed-in user's token
    assert other.login() == 303
    assert other.request("POST", "/console/pair", {**form, "csrf": csrf})[0] == 403
    assert site.reg.device("u2") is None and t.mode == "enrolling"
    status, headers, _ = h.request("POST", "/console/pair", {**form, "csrf": csrf},
                                   headers={"Origin": f"http://127.0.0.1:{console_app.port}"})
    assert (status, headers["location"]) == (303, "/console/")
    paired_idle(t, "W01")
    assert "已配对 u2" in h.request("GET", "/console/")[2]
    assert (STAFF_USER, "pair") in [(e.who, e.action) for e in accounts.audit_entries(console_app.store)]
    assert code not in str(accounts.audit_entries(console_app.store))


def test_roles_auditor_reads_supervisor_neither(console_app, site, enrol):
    t = enrol("u3")
    code = code_of(t)
    auditor = Http(console_app.port)
    assert auditor.login(AUDITOR) == 303
    status, _, page = auditor.request("GET", "/console/")
    assert status == 200 and "u3" in page and 'action="/console/pair"' not in page   # read only: no forms
    assert auditor.request("GET", "/console/audit")[0] == 200
    assert auditor.request("GET", "/console/users")[0] == 403
    assert auditor.request("GET", "/console/pair")[0] == 403
    csrf = auditor.csrf("/console/audit")
    assert auditor.request("POST", "/console/pair", {"code": code, "window": "W01", "csrf": csrf})[0] == 403
    supervisor = Http(console_app.port)
    assert supervisor.login(SUPERVISOR) == 303
    status, _, page = supervisor.request("GET", "/console/")
    assert status == 200 and "u3" not in page
    assert supervisor.request("GET", "/console/audit")[0] == 403
    assert site.reg.device("u3") is None and t.mode == "enrolling"


def test_admin_adds_and_disables_users_audited(console_app):
    h = Http(console_app.port)
    assert h.login() == 303
    csrf = h.csrf("/console/users")
    form = {"csrf": csrf, "name": "zhouqi", "password": "long enough pw", "role": "supervisor", "windows": ["W01"]}
    assert h.request("POST", "/console/users", form)[0] == 303
    assert accounts.user(console_app.store, "zhouqi") == accounts.User("zhouqi", "supervisor", frozenset({"W01"}))
    for bad in ("evil\x1b[31mred", "two\nlines", "", "x" * 33, "名字"):
        status, _, page = h.request("POST", "/console/users", {**form, "name": bad})
        assert status == 400 and "name:" in page
        assert accounts.user(console_app.store, bad) is None
    z = Http(console_app.port)
    assert z.login("zhouqi", "long enough pw") == 303
    assert h.request("POST", "/console/users/disable", {"csrf": csrf, "name": "zhouqi"})[0] == 303
    assert z.request("GET", "/console/")[0] == 303          # signed out at once
    assert z.login("zhouqi", "long enough pw") == 401
    assert h.request("POST", "/console/users/disable", {"csrf": csrf, "name": STAFF_USER})[0] == 303
    assert accounts.user(console_app.store, STAFF_USER) is not None   # not yourself
    got = [(e.who, e.action, e.target) for e in accounts.audit_entries(console_app.store)]
    assert (STAFF_USER, "user-add", "zhouqi") in got and (STAFF_USER, "user-disable", "zhouqi") in got


def test_sign_in_cookie_flags_failures_logout(console_app):
    h = Http(console_app.port)
    _, headers, page = h.request("GET", "/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert h.request("POST", "/console/login", {"csrf": csrf, "user": STAFF_USER, "password": "wrong"})[0] == 401
    big = {"csrf": csrf, "user": STAFF_USER, "password": "x" * 20_000}   # refused unread: nothing counted or audited
    assert h.request("POST", "/console/login", big)[0] == 403
    forged = Http(console_app.port)  # a cross-site sign-in form has no pre-session cookie
    assert forged.request("POST", "/console/login", {"csrf": csrf, "user": STAFF_USER,
                                                     "password": STAFF_PASSWORD})[0] == 403
    conn = http.client.HTTPConnection("127.0.0.1", console_app.port, timeout=10)
    conn.request("POST", "/console/login", urlencode({"csrf": csrf, "user": STAFF_USER, "password": STAFF_PASSWORD}),
                 {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"hcp_pre={csrf}"})
    r = conn.getresponse()
    cookie = [c for c in r.headers.get_all("Set-Cookie") if c.startswith("hcp_s=")][0]
    assert r.status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" not in cookie
    conn.close()
    assert h.login() == 303
    assert h.request("POST", "/console/logout", {"csrf": h.csrf()})[0] == 303
    assert "hcp_s" not in h.cookies
    h.cookies["hcp_s"] = re.search(r"hcp_s=([^;]+)", cookie).group(1)   # the first session still works …
    assert h.request("GET", "/console/")[0] == 200
    assert h.request("POST", "/console/logout", {"csrf": h.csrf()})[0] == 303
    h.cookies["hcp_s"] = re.search(r"hcp_s=([^;]+)", cookie).group(1)   # … until signed out at the server
    assert h.request("GET", "/console/")[0] == 303
    actions = [e.action for e in accounts.audit_entries(console_app.store)]
    assert actions.count("sign-in-failed") == 1 and actions.count("sign-in") == 2 and "sign-out" in actions
