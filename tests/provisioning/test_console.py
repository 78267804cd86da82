"""The console over plain HTTP: pages and actions refuse unauthenticated requests and forged forms."""
from __future__ import annotations

import http.client
import re
from http.cookies import SimpleCookie
from urllib.parse import urlencode

from devkit.waiting import wait_for
from tests.provisioning.conftest import STAFF_PASSWORD, STAFF_USER, code_of, paired_idle


class Http:
    """A cookie-keeping HTTP client that does not follow redirects (we check each answer)."""

    def __init__(self, port: int):
        self.port = port
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, form: dict | None = None, headers: dict | None = None,
                cookies: bool = True) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        h = {"Host": f"127.0.0.1:{self.port}", **(headers or {})}
        if cookies and self.cookies:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            body = urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        conn.request(method, path, body, h)
        r = conn.getresponse()
        text = r.read().decode("utf-8", "replace")
        for raw in r.headers.get_all("Set-Cookie") or []:
            c = SimpleCookie(raw)
            for k, m in c.items():
                self.cookies[k] = m.value
        conn.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, text

    def login(self, user: str = STAFF_USER, password: str = STAFF_PASSWORD) -> int:
        _, _, page = self.request("GET", "/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        return self.request("POST", "/login", {"csrf": csrf, "user": user, "password": password})[0]

    def csrf(self) -> str:
        _, _, page = self.request("GET", "/")
        return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


def test_pages_and_actions_refuse_unauthenticated_requests(console, site, enrol):
    t = enrol("u1")
    code = code_of(t)
    h = Http(console.port)
    for path in ("/", "/audit", f"/pair?code={code}", "/nope"):
        status, headers, _ = h.request("GET", path)
        assert (status, headers.get("location")) == (303, "/login"), path
    for path, form in (("/pair", {"code": code, "window": "W01"}), ("/action", {"op": "revoke", "device": "u1",
                                                                              "confirm": "yes"}),
                       ("/logout", {})):
        assert h.request("POST", path, form)[0] == 403, path
    h.cookies["hcp_session"] = "guessed-token"
    assert h.request("POST", "/pair", {"code": code, "window": "W01", "csrf": "x"})[0] == 403
    assert h.request("GET", "/")[0] == 303
    assert site.reg.device("u1") is None and t.mode == "enrolling"


def test_forged_forms_are_refused_and_a_real_one_works(console, site, enrol):
    t = enrol("u2")
    code = code_of(t)
    h = Http(console.port)
    assert h.login() == 303
    status, headers, page = h.request("GET", "/")
    assert status == 200 and "u2" in page
    assert "default-src 'none'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"
    assert h.cookies["hcp_session"]
    csrf = h.csrf()
    form = {"code": code, "window": "W01"}
    assert h.request("POST", "/pair", form)[0] == 403                                   # no token
    assert h.request("POST", "/pair", {**form, "csrf": csrf[:-1] + ("B" if csrf[-1] == "A" else "A")})[0] == 403
    assert h.request("POST", "/pair", {**form, "csrf": csrf},                            # right token, other site
                     headers={"Origin": "http://evil.example"})[0] == 403
    assert h.request("POST", "/pair", {**form, "csrf": csrf}, headers={"Origin": "null"})[0] == 403
    other = Http(console.port)                                                           # another signed-in user's token
    assert other.login() == 303
    assert other.request("POST", "/pair", {**form, "csrf": csrf})[0] == 403
    assert site.reg.device("u2") is None and t.mode == "enrolling"
    status, headers, _ = h.request("POST", "/pair", {**form, "csrf": csrf},
                                   headers={"Origin": f"http://127.0.0.1:{console.port}"})
    assert (status, headers["location"]) == (303, "/")
    paired_idle(t, "W01")
    assert "已配对 u2" in h.request("GET", "/")[2]
    assert [(e.who, e.action, e.target) for e in site.reg.audit_log(1)][0][:2] in (
        (STAFF_USER, "pair"), ("system", "paired-online"))


def test_sign_in_cookie_flags_failures_logout(console, site):
    h = Http(console.port)
    _, headers, page = h.request("GET", "/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    assert h.request("POST", "/login", {"csrf": csrf, "user": STAFF_USER, "password": "wrong"})[0] == 401
    forged = Http(console.port)  # a cross-site sign-in form has no pre-session cookie
    assert forged.request("POST", "/login", {"csrf": csrf, "user": STAFF_USER, "password": STAFF_PASSWORD})[0] == 403
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=10)
    conn.request("POST", "/login", urlencode({"csrf": csrf, "user": STAFF_USER, "password": STAFF_PASSWORD}),
                 {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"hcp_pre={csrf}"})
    r = conn.getresponse()
    cookie = [c for c in r.headers.get_all("Set-Cookie") if c.startswith("hcp_session=")][0]
    assert r.status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    conn.close()
    assert h.login() == 303
    assert h.request("POST", "/logout", {"csrf": h.csrf()})[0] == 303
    assert h.request("GET", "/")[0] == 303  # the session is gone at the server, not only in the browser
    # Too many failures lock the name out for a while, even with the right password afterwards.
    codes = [h.login(password="wrong") for _ in range(10)]
    assert codes == [401] * 9 + [429]  # the first failure was above: ten in all, then locked
    assert h.login() == 429
    actions = [e.action for e in site.reg.audit_log(50)]
    assert actions.count("sign-in-failed") == 10 and "sign-in" in actions
