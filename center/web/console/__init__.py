"""The staff console on the one web app: sign-in, terminals and pairing (the Provisioner), users and roles,
the audit log. `install(app, prov, store, settings)` mounts it (`console_router` + the sign-in redirect).

Protections (kept from the old http.server console, plus the hostile tester's fixes):
- sessions: a 256-bit cookie `hcp_s` (HttpOnly, SameSite=Strict, Secure over https) of which only the
  SHA-256 is stored; sign-in forms carry a double-submit token (`hcp_pre` cookie), every other POST the
  session's CSRF token, and a browser's Origin must be this site;
- failed sign-ins are slowed per (name, client address) — accounts.SignInLimits: after 5 failures the pair
  waits 1, 2, 4 … s (at most 15 min) between tries and gets 429 + Retry-After; never a lockout of a name by
  others; the address is X-Forwarded-For only from a trusted proxy (uvicorn `forwarded_allow_ips`); each
  try is counted before the password is checked;
- password checks (scrypt, 16 MiB each) run in a pool of VERIFY_WORKERS threads, so a burst of sign-ins
  waits in line instead of holding memory;
- pairing codes only by POST (admin, CSRF); no page looks a code up, no URL carries one; wrong codes are
  limited per user and per center by the Provisioner and audited;
- security headers, no caching and HSTS over https come from the app's Guard (center/web/app.py);
  SERVER_LIMITS are the uvicorn settings the service runs with.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter, Depends, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from center import accounts
from center.accounts import ROLES, AccountError, SignInLimits, User
from center.store import Store
from center.web import auth
from center.web.auth import SESSION_COOKIE, SignInRequired, client_address, require, same_origin, signed_in
from center.web.console.layout import render
from center.web.settings import WebSettings
from provisioning.service import Provisioner, Refused
from provisioning.users import MIN_PASSWORD, NAME, same, token_hash

log = logging.getLogger("console")

PRE_COOKIE = "hcp_pre"
VERIFY_WORKERS = 2
MAX_FORM = 16 * 1024        # a console form is small; anything bigger is refused unread
ACTIONS = ("unpair", "move", "replace", "revoke", "rotate")
STATE_ZH = {"pending": "待配对", "active": "在用", "retired": "已替换", "unpaired": "已解除", "revoked": "已停用"}
ROLES_ZH = {"admin": "管理员 admin", "supervisor": "科室负责人 supervisor", "auditor": "审计 auditor"}
# uvicorn settings for the service (center/service.py passes them to WebServer): idle keep-alive connections
# closed after 5 s; past 4,096 connections or tasks new requests get 503 instead of eating memory; a listen
# backlog that absorbs a burst of connections.
SERVER_LIMITS = dict(timeout_keep_alive=5, limit_concurrency=4096, backlog=2048)

_verify_pool = ThreadPoolExecutor(max_workers=VERIFY_WORKERS, thread_name_prefix="verify")


def install(app: FastAPI, prov: Provisioner | None, store: Store, settings: WebSettings, center_name: str = "",
            windows: tuple[tuple[str, str], ...] = ()) -> None:
    """Mount the console on `app`: its routes and the 303-to-sign-in for pages of a signed-out browser.
    Without a Provisioner (the demo: no Dynamic Security broker) the terminal and pairing pages say so and
    every other page works; `windows` are then (id, name) pairs for the forms."""
    app.state.console_center_name = center_name or (prov.cfg.center.name or prov.center if prov else "")
    app.state.console_windows = windows
    app.add_exception_handler(SignInRequired, auth.sign_in_redirect)
    app.include_router(console_router(prov, store, settings, windows))


def console_router(prov: Provisioner | None, store: Store, settings: WebSettings,
                   known_windows: tuple[tuple[str, str], ...] = ()) -> APIRouter:
    r = APIRouter(prefix="/console", include_in_schema=False)
    limits = SignInLimits(store)
    flashes: OrderedDict[str, tuple[str, str]] = OrderedDict()   # session hash → (ok|error, message)
    admin, reader = require("admin"), require("admin", "auditor")

    def cookie(name: str, value: str, max_age: int) -> str:
        return (f"{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}"
                + ("; Secure" if settings.https else ""))

    def flash(request: Request, kind: str, text: str) -> None:
        flashes[token_hash(request.cookies.get(SESSION_COOKIE, ""))] = (kind, text)
        while len(flashes) > 1000:
            flashes.popitem(last=False)

    def take_flash(request: Request) -> tuple[str, str] | None:
        return flashes.pop(token_hash(request.cookies.get(SESSION_COOKIE, "")), None)

    def windows() -> list[tuple[str, str]]:
        if prov is None:
            return list(known_windows)
        return [(w.id, w.name if w.name.startswith(w.id) else f"{w.id} {w.name}") for w in prov.cfg.windows]

    async def form_of(request: Request):
        length = request.headers.get("content-length", "")
        if not length.isdigit() or int(length) > MAX_FORM:
            return None
        try:
            return await request.form(max_files=0, max_fields=30)
        except Exception:  # noqa: BLE001 - a malformed body is a bad request, nothing more
            return None

    async def checked_form(request: Request):
        """The form of a signed-in POST, or None when it is forged, stale or from another site."""
        form = await form_of(request)
        if form is None or not same_origin(request, settings.public_base) or not auth.csrf_ok(request, form):
            return None
        return form

    def forged(request: Request, who: str) -> Response:
        log.warning("refused a forged or stale form from %s for %s", client_address(request), who)
        return PlainTextResponse("forged or stale form", 403)

    # ---- sign-in ------------------------------------------------------------------------------------

    def login_page(request: Request, error: str = "", status: int = 200,
                   headers: dict[str, str] | None = None) -> Response:
        pre = request.cookies.get(PRE_COOKIE, "")
        if not (len(pre) == 32 and pre.replace("-", "").replace("_", "").isalnum()):
            pre = secrets.token_urlsafe(24)     # kept across tabs
        response = render(request, None, "登录 Sign in", template="login.html", status=status, headers=headers,
                          pre=pre, error=error)
        response.headers.append("Set-Cookie", cookie(PRE_COOKIE, pre, 600))
        return response

    @r.get("/login")
    def login_form(request: Request) -> Response:
        return login_page(request)

    @r.post("/login")
    async def login(request: Request) -> Response:
        form = await form_of(request)
        pre = request.cookies.get(PRE_COOKIE, "")
        if form is None or not pre or not same(str(form.get("csrf", "")), pre) or not same_origin(
                request, settings.public_base):
            return PlainTextResponse("forged or stale form", 403)
        name, password = str(form.get("user", ""))[:64], str(form.get("password", ""))[:1024]
        addr = client_address(request)
        wait = await run_in_threadpool(limits.begin, name, addr)
        if wait > 0:
            return login_page(request, "登录失败次数过多，请稍后再试 (too many failed sign-ins: try again later)", 429,
                              {"Retry-After": str(int(wait) + 1)})
        found = None
        if NAME.fullmatch(name):
            found = await asyncio.wrap_future(_verify_pool.submit(accounts.verify, store, name, password))
        if found is None:
            def failed() -> None:
                with store.write() as conn:
                    accounts.audit(conn, name[:32] or "-", "sign-in-failed", "-", f"from {addr}")
            await run_in_threadpool(failed)
            return login_page(request, "用户名或密码错误 (wrong user or password)", 401)

        def succeeded() -> str:
            limits.succeeded(name, addr)
            token, _ = accounts.start_session(store, name)
            with store.write() as conn:
                accounts.audit(conn, name, "sign-in", "-", f"from {addr}")
            return token
        token = await run_in_threadpool(succeeded)
        response = RedirectResponse("/console/", 303)
        response.headers.append("Set-Cookie", (f"{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; "
                                               f"Max-Age={accounts.SESSION_S}" + ("; Secure" if settings.https else "")))
        response.headers.append("Set-Cookie", cookie(PRE_COOKIE, "", 0))
        return response

    @r.post("/logout")
    async def logout(request: Request, user: User = Depends(signed_in)) -> Response:
        if await checked_form(request) is None:
            return forged(request, user.name)

        def end() -> None:
            accounts.end_session(store, request.cookies.get(SESSION_COOKIE, ""))
            with store.write() as conn:
                accounts.audit(conn, user.name, "sign-out", "-")
        await run_in_threadpool(end)
        response = RedirectResponse(auth.LOGIN, 303)
        response.headers.append("Set-Cookie", f"{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
                                + ("; Secure" if settings.https else ""))
        return response

    # ---- terminals and pairing ----------------------------------------------------------------------

    @r.get("")
    def root() -> Response:
        return RedirectResponse("/console/", 303)

    @r.get("/")
    def terminals(request: Request, user: User = Depends(signed_in)) -> Response:
        if user.role not in ("admin", "auditor"):
            return render(request, user, "工作人员 Staff", '<p class="card">请从上方选择页面。Choose a page above.</p>')
        import time
        if prov is None:
            return render(request, user, "终端 Terminals", '<p class="card">此服务未配置配对（演示）。Pairing is not '
                          'configured in this service (the demo: no Dynamic Security broker).</p>')
        pending, paired = prov.terminals()
        return render(request, user, "终端 Terminals", template="terminals.html", pending=pending, paired=paired,
                      now=time.time(), states=STATE_ZH, windows=windows(), admin=user.role == "admin",
                      flash=take_flash(request))

    @r.get("/pair")
    def pair_page(request: Request, user: User = Depends(admin)) -> Response:
        """Opened from a terminal's pairing QR: never looks the code up (that made it an oracle), never shows
        it back; the device id is shown so staff can check the screen, and they type the code."""
        device = request.query_params.get("device", "")
        device = device if NAME.fullmatch(device) else ""
        if "code" in request.query_params:   # out of the address bar (and the browser history) at once
            return RedirectResponse("/console/pair" + (f"?device={device}" if device else ""), 303)
        return render(request, user, "配对 Pair", template="pair.html", device=device, windows=windows(),
                      flash=take_flash(request))

    def act(request: Request, user: User, run, action: str, target: str) -> Response:
        """Run a Provisioner operation; audit it here too (its own audit is in the registry); flash the outcome."""
        try:
            if prov is None:
                raise Refused("此服务未配置配对 (pairing is not configured here)")
            message, kind = run(), "ok"
            if isinstance(message, tuple):
                message, target = message
        except Refused as e:
            message, kind = str(e), "error"
        except Exception as e:  # noqa: BLE001 - staff see the kind of failure, the details go to the log
            log.exception("console action %s failed", action)
            message, kind = f"failed: {type(e).__name__}", "error"
        with store.write() as conn:
            accounts.audit(conn, user.name, action if kind == "ok" else f"{action}-refused", target,
                           message if kind == "error" else "")
        flash(request, kind, message)
        return RedirectResponse("/console/", 303)

    @r.post("/pair")
    async def pair(request: Request, user: User = Depends(admin)) -> Response:
        form = await checked_form(request)
        if form is None:
            return forged(request, user.name)
        code, window = str(form.get("code", "")), str(form.get("window", ""))

        def run() -> tuple[str, str]:
            d = prov.pair(code, window, user.name)
            return f"已配对 {d.device} → {d.window} (paired)", d.device
        return await run_in_threadpool(act, request, user, run, "pair", window[:32])

    @r.post("/action")
    async def action(request: Request, user: User = Depends(admin)) -> Response:
        form = await checked_form(request)
        if form is None:
            return forged(request, user.name)
        op, dev = str(form.get("op", "")), str(form.get("device", ""))

        def run() -> str:
            if op not in ACTIONS:
                raise Refused("unknown action")
            if op == "unpair":
                prov.unpair(dev, user.name)
                return f"已解除配对 {dev} (unpaired)"
            if op == "move":
                prov.move(dev, str(form.get("window", "")), user.name)
                return f"{dev} 已移至 {form.get('window')} (moved)"
            if op == "replace":
                new = prov.replace(dev, str(form.get("code", "")), user.name)
                return f"{new.device} 已替换 {dev} (replaced)"
            if op == "revoke":
                if form.get("confirm") != "yes":
                    raise Refused("停用需要确认 (tick the box to confirm)")
                prov.revoke(dev, user.name)
                return f"{dev} 已停用 (revoked)"
            gen = prov.rotate(dev, user.name)
            return f"{dev} 新凭据已发送（第 {gen} 代），终端确认后生效 (rotation sent)"
        return await run_in_threadpool(act, request, user, run, op if op in ACTIONS else "action", dev[:64])

    # ---- users --------------------------------------------------------------------------------------

    def users_page(request: Request, user: User, status: int = 200) -> Response:
        return render(request, user, "用户 Users", template="users.html", status=status,
                      users=accounts.all_users(store), roles=ROLES, roles_zh=ROLES_ZH, windows=windows(),
                      min_password=MIN_PASSWORD, flash=take_flash(request))

    @r.get("/users")
    def users_list(request: Request, user: User = Depends(admin)) -> Response:
        return users_page(request, user)

    @r.post("/users")
    async def user_add(request: Request, user: User = Depends(admin)) -> Response:
        form = await checked_form(request)
        if form is None:
            return forged(request, user.name)
        name, role = str(form.get("name", "")), str(form.get("role", ""))
        wins = frozenset(str(w) for w in form.getlist("windows")) or None
        known = {w for w, _ in windows()}

        def run() -> Response:
            try:
                if wins and not wins <= known:
                    raise AccountError("windows: not in the center file")
                accounts.create_user(store, name, str(form.get("password", "")), role,
                                     wins if role == "supervisor" else None)
            except (AccountError, ValueError) as e:
                flash(request, "error", str(e))
                return users_page(request, user, 400)
            with store.write() as conn:
                accounts.audit(conn, user.name, "user-add", name, f"role {role}"
                               + (f"; windows {','.join(sorted(wins))}" if wins and role == "supervisor" else ""))
            flash(request, "ok", f"已新增用户 {name} (added)")
            return RedirectResponse("/console/users", 303)
        return await run_in_threadpool(run)

    for verb in ("disable", "enable"):
        def make(verb: str):
            async def toggle(request: Request, user: User = Depends(admin)) -> Response:
                form = await checked_form(request)
                if form is None:
                    return forged(request, user.name)
                name = str(form.get("name", ""))
                if name == user.name:
                    flash(request, "error", "不能停用自己 (not yourself)")
                elif await run_in_threadpool(accounts.set_disabled, store, name, verb == "disable", user.name):
                    flash(request, "ok", f"{name}: {'已停用 disabled' if verb == 'disable' else '已启用 enabled'}")
                return RedirectResponse("/console/users", 303)
            return toggle
        r.add_api_route(f"/users/{verb}", make(verb), methods=["POST"])

    # ---- audit --------------------------------------------------------------------------------------

    @r.get("/audit")
    def audit_page(request: Request, user: User = Depends(reader)) -> Response:
        """The console's log (center store) and the pairing service's (its registry), newest first."""
        entries = accounts.audit_entries(store, 300) + (list(prov.reg.audit_log(300)) if prov else [])
        entries.sort(key=lambda e: e.at, reverse=True)
        return render(request, user, "审计 Audit", template="audit.html", entries=entries[:300])

    return r
