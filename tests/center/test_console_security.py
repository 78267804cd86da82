"""The hostile tester's findings against the old pairing console, each tried again on the real server
(uvicorn, the center app with the console, a real Store on SQLite and PostgreSQL, the real pairing service
and broker): a silent TLS connection, sign-in limits behind a proxy and in parallel, the pairing-code
oracle, idle connections, control characters in names and in the audit log, HSTS."""
from __future__ import annotations

import http.client
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest
from hypothesis import given, strategies as st

from center import accounts
from center.accounts import FREE_FAILURES, AccountError, SignInLimits, printable
from devkit.waiting import wait_for
from tests.provisioning.conftest import STAFF_PASSWORD, STAFF_USER, code_of, enrol, pki, site  # noqa: F401 - fixtures
from tests.provisioning.test_console import Http, serve_console

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_silent_tls_connection_does_not_hold_up_other_clients(site, store, tmp_path, pki):
    server = pki["server"]
    with serve_console(site.prov, store, tmp_path, tls=(str(server.cert), str(server.key))) as c:
        silent = [socket.create_connection(("127.0.0.1", c.port)) for _ in range(3)]   # never say hello
        half = socket.create_connection(("127.0.0.1", c.port))
        half.sendall(b"\x16\x03\x01\x02\x00\x01")   # the first bytes of a ClientHello, then nothing
        try:
            h = Http(c.port, ca=str(pki["ca"].cert))
            assert h.login() == 303                  # would time out if the handshake blocked the server
            status, headers, _ = h.request("GET", "/console/")
            assert status == 200
            assert headers["strict-transport-security"].startswith("max-age=")     # HSTS over https
            assert "secure" in [flag.strip().lower() for flag in h_cookie_flags(c.port, pki)]
        finally:
            for s in silent + [half]:
                s.close()


def h_cookie_flags(port: int, pki) -> list[str]:
    """The flags of the session cookie a sign-in over https sets."""
    ctx = ssl.create_default_context(cafile=str(pki["ca"].cert))
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    conn.request("GET", "/console/login")
    r = conn.getresponse()
    page = r.read().decode()
    pre = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    conn.request("POST", "/console/login", urlencode({"csrf": pre, "user": STAFF_USER, "password": STAFF_PASSWORD}),
                 {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"hcp_pre={pre}"})
    r = conn.getresponse()
    r.read()
    cookie = [c for c in r.headers.get_all("Set-Cookie") if c.startswith("hcp_s=")][0]
    conn.close()
    return cookie.split(";")[1:]


def test_behind_a_proxy_failures_slow_one_name_and_address_never_the_name(site, store, tmp_path):
    with serve_console(site.prov, store, tmp_path, forwarded_allow_ips="127.0.0.1") as c:
        attacker = Http(c.port, headers={"X-Forwarded-For": "203.0.113.7"})
        assert [attacker.login(password="wrong guess") for _ in range(FREE_FAILURES)] == [401] * FREE_FAILURES
        assert attacker.login() == 429                       # even the right password waits now
        status, headers, _ = attacker_post(attacker)
        assert status == 429 and int(headers["retry-after"]) >= 1
        colleague = Http(c.port, headers={"X-Forwarded-For": "198.51.100.20"})   # same proxy, other client
        assert colleague.login() == 303
        assert attacker.login("lisi", "wrong guess") == 401  # another name from the attacker: its own count
    fails = [e for e in accounts.audit_entries(store) if e.action == "sign-in-failed"]
    assert len(fails) == FREE_FAILURES + 1 and fails[-1].detail == "from 203.0.113.7"


def attacker_post(h: Http):
    _, _, page = h.request("GET", "/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    return h.request("POST", "/console/login", {"csrf": csrf, "user": STAFF_USER, "password": STAFF_PASSWORD})


def test_an_untrusted_peer_cannot_pick_its_address(site, store, tmp_path):
    with serve_console(site.prov, store, tmp_path, forwarded_allow_ips="192.0.2.1") as c:
        codes = [Http(c.port, headers={"X-Forwarded-For": f"10.0.0.{i}"}).login(password="wrong guess")
                 for i in range(FREE_FAILURES + 1)]
    assert codes == [401] * FREE_FAILURES + [429]           # the header is ignored: all from 127.0.0.1
    assert {e.detail for e in accounts.audit_entries(store) if e.action == "sign-in-failed"} == {"from 127.0.0.1"}


def test_parallel_sign_ins_do_not_beat_the_limit(site, store, tmp_path):
    with serve_console(site.prov, store, tmp_path) as c:
        clients = [Http(c.port) for _ in range(64)]
        forms = []
        for h in clients:
            _, _, page = h.request("GET", "/console/login")
            forms.append({"csrf": re.search(r'name="csrf" value="([^"]+)"', page).group(1), "user": STAFF_USER,
                          "password": "wrong guess"})
        start = threading.Barrier(64)

        def post(i: int) -> int:
            start.wait()
            return clients[i].request("POST", "/console/login", forms[i])[0]
        with ThreadPoolExecutor(64) as pool:
            codes = list(pool.map(post, range(64)))
    assert sorted(codes) == [401] * FREE_FAILURES + [429] * (64 - FREE_FAILURES)
    assert sum(e.action == "sign-in-failed" for e in accounts.audit_entries(store)) == FREE_FAILURES


def test_the_wait_grows_and_a_success_clears_it(store):
    limits, t = SignInLimits(store), 1_000_000.0
    for i in range(FREE_FAILURES):
        assert limits.begin("wang", "10.0.0.1", now=t + i) == 0
    last = t + FREE_FAILURES - 1
    waits = []
    for _ in range(5):
        wait = limits.begin("wang", "10.0.0.1", now=last)
        assert wait > 0 and limits.begin("wang", "10.0.0.1", now=last + wait - 0.01) > 0
        last = last + wait
        assert limits.begin("wang", "10.0.0.1", now=last) == 0       # allowed (and counted) once it is over
        waits.append(round(wait))
    assert waits == [1, 2, 4, 8, 16]
    assert limits.begin("wang", "10.0.0.2", now=last) == 0           # another address: not affected
    assert limits.begin("li", "10.0.0.1", now=last) == 0             # another name: not affected
    limits.succeeded("wang", "10.0.0.1")
    assert limits.begin("wang", "10.0.0.1", now=last) == 0
    assert limits.begin("wang", "10.0.0.1", now=last + accounts.FAILURE_WINDOW_S + 60) == 0   # old ones expire


def test_pairing_codes_are_no_oracle(site, store, tmp_path, enrol, caplog):
    caplog.set_level("DEBUG")
    t = enrol("o1")
    code = code_of(t)
    wrong = "000000" if code != "000000" else "000001"
    with serve_console(site.prov, store, tmp_path) as c:
        h = Http(c.port)
        assert h.login() == 303
        pages = []
        for guess in (code, wrong):      # GET with a code: no lookup, the code leaves the address bar
            status, headers, _ = h.request("GET", f"/console/pair?code={guess}&device=o1")
            assert (status, headers["location"]) == (303, "/console/pair?device=o1")
            status, _, page = h.request("GET", headers["location"])
            assert status == 200 and code not in page
            pages.append(page)
        assert pages[0] == pages[1]
        csrf = h.csrf()
        for _ in range(5):               # wrong codes: refused, counted for this user, audited
            assert h.request("POST", "/console/pair", {"csrf": csrf, "code": wrong, "window": "W01"})[0] == 303
            assert "unknown, used or expired" in h.request("GET", "/console/")[2]
        h.request("POST", "/console/pair", {"csrf": csrf, "code": code, "window": "W01"})
        assert "too many wrong pairing codes" in h.request("GET", "/console/")[2]     # even the right one now
        assert site.reg.device("o1") is None and t.mode == "enrolling"
        other = Http(c.port)             # an auditor cannot try codes at all
        assert other.login("lisi") == 303
        assert other.request("POST", "/console/pair", {"csrf": other.csrf(), "code": code, "window": "W01"})[0] == 403
    refused = [e for e in accounts.audit_entries(store) if e.action == "pair-refused"]
    assert len(refused) == 6 and all(e.who == STAFF_USER for e in refused)
    everything = str(accounts.audit_entries(store)) + str(site.reg.audit_log(500)) + caplog.text
    assert code not in everything and wrong not in everything


def test_idle_connections_do_not_starve_clients(site, store, tmp_path):
    with serve_console(site.prov, store, tmp_path) as c:
        assert c.web.config.backlog == 2048 and c.web.config.timeout_keep_alive == 5
        idle = []
        try:
            for _ in range(1100):
                idle.append(socket.create_connection(("127.0.0.1", c.port)))
            h = Http(c.port)
            assert h.login() == 303 and h.request("GET", "/console/")[0] == 200
            kept = socket.create_connection(("127.0.0.1", c.port))   # a keep-alive connection left idle …
            kept.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{c.port}\r\n\r\n".encode())
            kept.settimeout(30)
            assert kept.recv(4096).startswith(b"HTTP/1.1 200")
            wait_for(lambda: kept.recv(4096) == b"", 30, "the server closes an idle keep-alive connection")
            kept.close()
        finally:
            for s in idle:
                s.close()


def test_names_with_control_characters_never_reach_a_screen(site, store, tmp_path):
    for bad in ("evil\x1b[2J", "two\nlines", "tab\there", "bidi\u202eevil", "空格 name"):
        with pytest.raises(AccountError):
            accounts.create_user(store, bad, STAFF_PASSWORD, "admin")
    forged = "x\x1b[32m\n2026-01-01 00:00:00  root  sign-in"
    with serve_console(site.prov, store, tmp_path) as c:
        h = Http(c.port)
        assert h.login(forged) == 401
        assert h.login() == 303
        page = h.request("GET", "/console/audit")[2]
    assert "\x1b" not in page and "x\\x1b[32m\\n2026-01-01" in page
    assert any(e.who.startswith("x\x1b") for e in accounts.audit_entries(store))   # stored as sent, shown escaped
    r = subprocess.run([sys.executable, "-c", "import sys; from center.accounts import users_main; "
                        "sys.exit(users_main(sys.argv[1:]))", "--db", store_url_of(store), "add", "evil\x1b[2J",
                        "--role", "admin"], input="long enough pw\n", capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and "name:" in r.stderr
    r = subprocess.run([sys.executable, "-c", "import sys; from center.accounts import users_main; "
                        "sys.exit(users_main(sys.argv[1:]))", "--db", store_url_of(store), "add", "zhouqi",
                        "--role", "supervisor", "--windows", "W01,W02"], input="long enough pw\n",
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert accounts.user(store, "zhouqi") == accounts.User("zhouqi", "supervisor", frozenset({"W01", "W02"}))
    assert accounts.verify(store, "zhouqi", "long enough pw") is not None


def store_url_of(store) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def _unescape(text: str) -> str:
    return re.sub(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})", lambda m: {
        "\\": "\\", "n": "\n", "r": "\r", "t": "\t"}.get(m.group(1)) or chr(int(m.group(1)[1:], 16)), text)


@given(st.text())
def test_printable_escapes_every_control_and_loses_nothing(text):
    shown = printable(text)
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]", shown)
    assert _unescape(shown) == text
