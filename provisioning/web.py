"""The pairing console: a small web application for center staff, usable on a phone or a PC.

Standard library only (http.server). No JavaScript: plain forms, so it works on any phone browser.
Security:
- staff sign in (scrypt hashes, failed sign-ins rate-limited); a session is a 256-bit random cookie
  (HttpOnly, SameSite=Strict, Secure behind TLS) of which the registry keeps only the hash;
- every state-changing request is a POST carrying the session's CSRF token (and, when the browser
  sends one, an Origin matching this console); anything else is refused with 403;
- every page sends a strict Content-Security-Policy, no framing, no caching.
Serve it over TLS (`[console] tls_cert`/`tls_key`) or behind a TLS proxy: it carries passwords.
"""
from __future__ import annotations

import html
import logging
import secrets
import ssl
import threading
import time
from datetime import datetime
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from provisioning import users
from provisioning.registry import Registry
from provisioning.service import Provisioner, Refused, normalise_code

log = logging.getLogger("console")

SESSION_S = 8 * 3600
FAILED_LOGINS = 10          # per name and per address, in …
FAILED_LOGIN_WINDOW_S = 600
MAX_BODY = 16 * 1024
CSS = (Path(__file__).with_name("console.css")).read_text("utf-8")
ACTIONS = ("unpair", "move", "replace", "revoke", "rotate")
STATE_ZH = {"pending": "待配对", "active": "在用", "retired": "已替换", "unpaired": "已解除", "revoked": "已停用"}


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


class Console:
    def __init__(self, prov: Provisioner, reg: Registry, host: str = "127.0.0.1", port: int = 8080, *,
                 tls_cert: str = "", tls_key: str = ""):
        self.prov, self.reg = prov, reg
        self.secure = bool(tls_cert)
        self._flash: dict[str, str] = {}
        handler = type("Handler", (_Handler,), {"console": self})
        self.server = ThreadingHTTPServer((host, port), handler)
        self.server.daemon_threads = True
        if tls_cert:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(tls_cert, tls_key or None)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="console", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> "Console":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Handler(BaseHTTPRequestHandler):
    console: Console
    server_version = "hcp-console"
    sys_version = ""

    # ---- plumbing -------------------------------------------------------------------------------

    def log_message(self, fmt: str, *args) -> None:  # no query strings (pairing codes) in the log
        log.info("%s %s %s", self.client_address[0], self.command, urlsplit(self.path).path)

    def _send(self, status: int, body: str = "", ctype: str = "text/html; charset=utf-8",
              headers: dict[str, str] | None = None) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "same-origin")  # (no-referrer would make browsers send Origin: null)
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; "
                                                    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _redirect(self, to: str, headers: dict[str, str] | None = None) -> None:
        self._send(HTTPStatus.SEE_OTHER, "", headers={"Location": to, **(headers or {})})

    def _cookie(self, name: str) -> str:
        c = SimpleCookie()
        try:
            c.load(self.headers.get("Cookie", ""))
        except Exception:  # noqa: BLE001 - a malformed cookie header is just no cookie
            return ""
        return c[name].value if name in c else ""

    def _set_cookie(self, name: str, value: str, max_age: int) -> str:
        flags = "; Secure" if self.console.secure else ""
        return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{flags}"

    def _session(self) -> tuple[str, str, str] | None:
        """(user, csrf token, session hash) of a signed-in request, else None."""
        token = self._cookie("hcp_session")
        if not token:
            return None
        h = users.token_hash(token)
        s = self.console.reg.session(h, time.time())
        return (s[0], s[1], h) if s else None

    def _form(self) -> dict[str, str] | None:
        try:
            n = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            return None
        if n < 0 or n > MAX_BODY or not self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"):
            return None
        raw = self.rfile.read(n).decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True, max_num_fields=20).items()}

    def _same_origin(self) -> bool:
        """A browser's Origin (or Referer) must name this console; absent (CLI tools) is left to CSRF."""
        origin = self.headers.get("Origin")
        if origin is None:
            return True
        return origin != "null" and urlsplit(origin).netloc == self.headers.get("Host", "")

    # ---- routes ---------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/console.css":
            return self._send(200, CSS, "text/css; charset=utf-8")
        if url.path == "/login":
            return self._login_page()
        if url.path == "/favicon.ico":
            return self._send(404, "", "text/plain; charset=utf-8")
        s = self._session()
        if s is None:
            return self._redirect("/login")
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/":
            return self._send(200, self._terminals_page(s, q))
        if url.path == "/pair":
            return self._send(200, self._pair_page(s, q))
        if url.path == "/audit":
            return self._send(200, self._audit_page(s))
        return self._send(404, self._page(s, "未找到 Not found", "<p>没有这个页面。</p>"))

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        form = self._form()
        if form is None:
            return self._send(400, "bad request", "text/plain; charset=utf-8")
        if url.path == "/login":
            return self._login(form)
        s = self._session()
        if s is None:
            return self._send(403, "sign in first", "text/plain; charset=utf-8")
        if not self._same_origin() or not users.same(form.get("csrf", ""), s[1]):
            log.warning("refused a forged or stale form from %s for %s", self.client_address[0], s[0])
            return self._send(403, "forged or stale form", "text/plain; charset=utf-8")
        if url.path == "/logout":
            self.console.reg.drop_session(s[2])
            return self._redirect("/login", {"Set-Cookie": self._set_cookie("hcp_session", "", 0)})
        if url.path == "/pair":
            return self._act(s, lambda who: self._do_pair(form, who))
        if url.path == "/action":
            return self._act(s, lambda who: self._do_action(form, who))
        return self._send(404, "not found", "text/plain; charset=utf-8")

    # ---- sign-in --------------------------------------------------------------------------------

    def _login_page(self, error: str = "", status: int = 200) -> None:
        pre = self._cookie("hcp_pre")  # double-submit token: a cross-site form cannot read or set it
        if not (len(pre) == 32 and pre.replace("-", "").replace("_", "").isalnum()):
            pre = secrets.token_urlsafe(24)  # (kept across tabs and the favicon request)
        body = f"""<form method="post" action="/login" class="card">
  <h2>工作人员登录 <small>Staff sign-in</small></h2>
  {f'<p class="error">{esc(error)}</p>' if error else ''}
  <input type="hidden" name="csrf" value="{pre}">
  <label>用户名 <small>User</small><input name="user" autocomplete="username" required maxlength="32"></label>
  <label>密码 <small>Password</small><input name="password" type="password" autocomplete="current-password"
    required maxlength="200"></label>
  <button type="submit">登录 Sign in</button>
</form>"""
        self._send(status, self._page(None, "登录 Sign in", body), headers={
            "Set-Cookie": self._set_cookie("hcp_pre", pre, 600)})

    def _login(self, form: dict[str, str]) -> None:
        reg = self.console.reg
        pre = self._cookie("hcp_pre")
        if not pre or not users.same(form.get("csrf", ""), pre) or not self._same_origin():
            return self._send(403, "forged or stale form", "text/plain; charset=utf-8")
        name, password, addr, now = form.get("user", ""), form.get("password", ""), self.client_address[0], time.time()
        since = now - FAILED_LOGIN_WINDOW_S
        if reg.attempts_since("login", name, since) >= FAILED_LOGINS or \
                reg.attempts_since("login-addr", addr, since) >= FAILED_LOGINS:
            return self._login_page("登录失败次数过多，请十分钟后再试 (too many failed sign-ins)", 429)
        if not users.NAME.fullmatch(name) or not users.check_password(password, reg.user_hash(name)):
            with reg.tx():
                reg.attempt("login", name[:32], now)
                reg.attempt("login-addr", addr, now)
                reg.audit(name[:32] or "-", "sign-in-failed", "-", f"from {addr}")
            return self._login_page("用户名或密码错误 (wrong user or password)", 401)
        token, csrf = users.new_token(), users.new_token()
        with reg.tx():
            reg.put_session(users.token_hash(token), name, csrf, now + SESSION_S)
            reg.audit(name, "sign-in", "-", f"from {addr}")
        self._redirect("/", {"Set-Cookie": self._set_cookie("hcp_session", token, SESSION_S)})

    # ---- actions --------------------------------------------------------------------------------

    def _act(self, s: tuple[str, str, str], run) -> None:
        try:
            message = run(s[0])
            ok = True
        except Refused as e:
            message, ok = str(e), False
        except Exception as e:  # noqa: BLE001 - show staff something useful, keep the details in the log
            log.exception("console action failed")
            message, ok = f"failed: {type(e).__name__}", False
        self.console._flash[s[2]] = ("ok:" if ok else "error:") + message
        self._redirect("/")

    def _do_pair(self, form: dict[str, str], who: str) -> str:
        d = self.console.prov.pair(form.get("code", ""), form.get("window", ""), who)
        return f"已配对 {d.device} → {d.window} (paired)"

    def _do_action(self, form: dict[str, str], who: str) -> str:
        prov, op, dev = self.console.prov, form.get("op", ""), form.get("device", "")
        if op not in ACTIONS:
            raise Refused("unknown action")
        if op == "unpair":
            prov.unpair(dev, who)
            return f"已解除配对 {dev} (unpaired)"
        if op == "move":
            prov.move(dev, form.get("window", ""), who)
            return f"{dev} 已移至 {form.get('window')} (moved)"
        if op == "replace":
            new = prov.replace(dev, form.get("code", ""), who)
            return f"{new.device} 已替换 {dev} (replaced)"
        if op == "revoke":
            if form.get("confirm") != "yes":
                raise Refused("停用需要确认 (tick the box to confirm)")
            prov.revoke(dev, who)
            return f"{dev} 已停用 (revoked)"
        gen = prov.rotate(dev, who)
        return f"{dev} 新凭据已发送（第 {gen} 代），终端确认后生效 (rotation sent)"

    # ---- pages ----------------------------------------------------------------------------------

    def _page(self, s: tuple[str, str, str] | None, title: str, body: str) -> str:
        nav = ""
        if s:
            nav = f"""<nav><a href="/">终端 Terminals</a> <a href="/audit">审计 Audit</a>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{esc(s[1])}">
<button type="submit" class="link">退出 {esc(s[0])}</button></form></nav>"""
        name = esc(self.console.prov.cfg.center.name or self.console.prov.center)
        return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · 终端配对</title><link rel="stylesheet" href="/console.css"></head>
<body><header><h1>{name} · 评价终端配对 <small>Pairing console</small></h1>{nav}</header>
<main>{body}</main></body></html>"""

    def _window_options(self, selected: str = "") -> str:
        return "".join(f'<option value="{esc(w.id)}"{" selected" if w.id == selected else ""}>'
                       f'{esc(w.name if w.name.startswith(w.id) else f"{w.id} {w.name}")}</option>'
                       for w in self.console.prov.cfg.windows)

    def _flash_html(self, s: tuple[str, str, str]) -> str:
        msg = self.console._flash.pop(s[2], "")
        if not msg:
            return ""
        kind, text = msg.split(":", 1)
        return f'<p class="flash {kind}" role="status">{esc(text)}</p>'

    def _pair_form(self, s: tuple[str, str, str], code: str = "", window: str = "") -> str:
        return f"""<form method="post" action="/pair" class="card" id="pair">
  <h2>配对终端 <small>Pair a terminal</small></h2>
  <p class="hint">输入终端屏幕上显示的 6 位配对码，选择窗口。Enter the code shown on the terminal.</p>
  <input type="hidden" name="csrf" value="{esc(s[1])}">
  <label>配对码 <small>Code</small><input name="code" value="{esc(code)}" inputmode="numeric"
    autocomplete="off" required maxlength="16" pattern="[0-9 ０-９-]{{6,16}}"></label>
  <label>窗口 <small>Window</small><select name="window" required>{self._window_options(window)}</select></label>
  <button type="submit">配对 Pair</button>
</form>"""

    def _terminals_page(self, s: tuple[str, str, str], q: dict[str, str]) -> str:
        pending, paired = self.console.prov.terminals()
        now = time.time()
        rows = "".join(f"""<tr><td><b>{esc(t.device)}</b><br><small>{esc(t.model or '')} {esc(t.fw or '')}</small></td>
<td>{_online(t.online)}</td><td>{when(t.seen)}</td><td>{max(0, int((t.code_expires or now) - now)) // 60} 分钟</td></tr>"""
                       for t in pending) or '<tr><td colspan="4" class="empty">没有待配对的终端 (none)</td></tr>'
        unpaired = f"""<section class="card"><h2>待配对终端 <small>Unpaired terminals</small></h2>
<p class="hint">配对码只显示在终端屏幕上。The code is shown only on the terminal's screen.</p>
<table><thead><tr><th>终端 Device</th><th>状态</th><th>最近通告 Last seen</th><th>配对码有效</th></tr></thead>
<tbody>{rows}</tbody></table></section>"""
        cards = "".join(self._device_card(s, t) for t in paired) or '<p class="empty">还没有已配对的终端 (none)</p>'
        body = (self._flash_html(s) + self._pair_form(s) + unpaired
                + f'<section><h2>已配对终端 <small>Paired terminals</small></h2>{cards}</section>'
                + '<p><a href="/">刷新 Refresh</a></p>')
        return self._page(s, "终端 Terminals", body)

    def _device_card(self, s: tuple[str, str, str], t) -> str:
        csrf = f'<input type="hidden" name="csrf" value="{esc(s[1])}"><input type="hidden" name="device" ' \
               f'value="{esc(t.device)}">'
        actions = ""
        if t.state == "active":
            actions += f"""<form method="post" action="/action" class="row">{csrf}<input type="hidden" name="op" value="move">
<select name="window" aria-label="window">{self._window_options(t.window or '')}</select><button>移动 Move</button></form>
<form method="post" action="/action" class="row">{csrf}<input type="hidden" name="op" value="replace">
<input name="code" placeholder="新终端配对码 new code" inputmode="numeric" required maxlength="16" aria-label="code">
<button>替换 Replace</button></form>"""
        if t.state != "revoked":
            actions += f"""<form method="post" action="/action" class="row">{csrf}<input type="hidden" name="op" value="rotate">
<button>更换凭据 Rotate</button></form>"""
        actions += f"""<form method="post" action="/action" class="row">{csrf}<input type="hidden" name="op" value="unpair">
<button>解除配对 Unpair</button></form>"""
        if t.state != "revoked":
            actions += f"""<form method="post" action="/action" class="row danger">{csrf}<input type="hidden" name="op" value="revoke">
<label class="check"><input type="checkbox" name="confirm" value="yes" required> 确认</label><button>停用 Revoke</button></form>"""
        extra = f" · 待送 {t.pending}" if t.pending is not None else ""
        extra += f" · 告警 {esc(t.alarms)}" if t.alarms else ""
        extra += " · 凭据更换中" if t.rotating else ""
        return f"""<article class="card device {esc(t.state)}"><h3>{esc(t.device)} <span class="state">{STATE_ZH.get(t.state, t.state)}</span>
{_online(t.online)}</h3><p>窗口 <b>{esc(t.window or '—')}</b> · 最近状态 {when(t.seen)}{extra}</p>
<p><small>{esc(t.model or '')} {esc(t.fw or '')}</small></p><div class="actions">{actions}</div></article>"""

    def _pair_page(self, s: tuple[str, str, str], q: dict[str, str]) -> str:
        """Opened from the QR code on a terminal: the code is filled in; staff check the device and pick a window."""
        code = normalise_code(q.get("code", "")) or ""
        ann = self.console.prov.announcement_for(code) if code else None
        if ann:
            info = f'<p class="card">终端 <b>{esc(ann.device)}</b> <small>{esc(ann.model or "")}</small> 正在等待配对。</p>'
        else:
            info = '<p class="flash error">配对码无效或已过期，请输入终端上显示的配对码。(unknown or expired code)</p>'
            code = ""
        return self._page(s, "配对 Pair", info + self._pair_form(s, code))

    def _audit_page(self, s: tuple[str, str, str]) -> str:
        rows = "".join(f"<tr><td>{when(e.at)}</td><td>{esc(e.who)}</td><td>{esc(e.action)}</td><td>{esc(e.target)}</td>"
                       f"<td>{esc(e.detail)}</td></tr>" for e in self.console.reg.audit_log(300))
        return self._page(s, "审计 Audit", f"""<section class="card"><h2>审计日志 <small>Audit log</small></h2>
<table class="audit"><thead><tr><th>时间 When</th><th>谁 Who</th><th>操作 What</th><th>终端 Target</th><th>详情</th></tr></thead>
<tbody>{rows}</tbody></table></section>""")


def _online(up: bool) -> str:
    return '<span class="online">● 在线</span>' if up else '<span class="offline">○ 离线</span>'
