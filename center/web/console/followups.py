"""The supervisor's follow-up pages (差评整改): `/console/followups` lists the follow-ups of the user's windows
(overdue ones highlighted), `/console/followups/<rating id>` shows one — the rating (level, reasons, the
citizen's words, how many photos; never the applicant or the case), its clocks and history — with the
steps its state allows (POST, CSRF-checked, audited).

Supervisors see and act on their windows only (another window's follow-up is 404, as if it did not
exist); admins see every window and act; auditors see every window and cannot act (403).
"""
from __future__ import annotations

import time
from datetime import datetime
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse

from center.accounts import User, audit
from center.followup import store as fstore
from center.followup.clocks import CLOCKS, FollowupPolicy
from center.followup.states import IllegalStep, allowed
from center.web.auth import csrf_ok, require, same_origin
from center.web.console.layout import add_nav, render

RATING_ID = r"^[A-Za-z0-9_.:-]{1,36}$"
CURSOR = r"^([0-9]{1,12}(\.[0-9]{1,9})?_[A-Za-z0-9_.:-]{1,36})?$"   # <opened>_<rating id> of a page's last row
PAGE = 200
READERS = require("admin", "supervisor", "auditor")
ACTORS = ("admin", "supervisor")

STATE_ZH = {"open": "待联系核实", "contacted": "已联系核实", "answered": "已答复", "rectified": "已整改", "closed": "已关闭"}
ACTION_ZH = {"contact": "已联系核实", "answer": "已答复", "rectify": "整改完成", "close": "关闭", "reopen": "重新打开",
             "note": "备注", "opened": "开始跟进"}
CLOCK_ZH = {"contact": "联系核实", "answer": "答复", "rectify": "整改"}
LEVEL_ZH = {"dissatisfied": "不满意", "very_dissatisfied": "非常不满意"}
CHANNEL_ZH = {"qr": "扫码", "sms": "短信", "staff_qr": "人员码", "hall_qr": "大厅码", "touch": "评价器", "keys": "评价器按键",
              "other": "其他"}
SHOW_ZH = {"active": "未关闭", "overdue": "已超期", "closed": "已关闭", "all": "全部"}

router = APIRouter(prefix="/console/followups", include_in_schema=False)
add_nav("/console/followups", "差评整改 Follow-ups", ("admin", "supervisor", "auditor"))


def _now(request: Request) -> float:
    clock = getattr(request.app.state, "clock", None)
    return clock() if clock is not None else time.time()


def _policy(request: Request) -> FollowupPolicy:
    """`app.state.followup_policy` (set by the service), else the defaults."""
    return getattr(request.app.state, "followup_policy", None) or FollowupPolicy()


def _page(request: Request, user: User, template: str, title: str, status: int = 200, **context) -> HTMLResponse:
    policy = _policy(request)
    zone = ZoneInfo(policy.tz)

    def local(ts: float | None) -> str:
        return datetime.fromtimestamp(ts, zone).strftime("%Y-%m-%d %H:%M") if ts is not None else "—"

    def due(ts: float) -> str:
        """A deadline is the midnight that ends a working day: shown as that day's 24:00."""
        return datetime.fromtimestamp(ts - 1, zone).strftime("%Y-%m-%d 24:00")

    return render(request, user, title, template=template, status=status, local=local, due=due, policy=policy,
                  state_zh=STATE_ZH,
                  action_zh=ACTION_ZH, clock_zh=CLOCK_ZH, level_zh=LEVEL_ZH, channel_zh=CHANNEL_ZH, show_zh=SHOW_ZH,
                  clocks=CLOCKS, **context)


@router.get("", response_class=HTMLResponse)
def list_page(request: Request, show: str = Query("active", pattern="^(active|overdue|closed|all)$"),
              after: str = Query("", pattern=CURSOR), user: User = Depends(READERS)) -> HTMLResponse:
    now = _now(request)
    cursor = None
    if after:
        opened, _, rid = after.partition("_")
        cursor = (float(opened), rid)
    with request.app.state.store.read() as conn:
        items = fstore.listing(conn, now, user.windows, show=show, limit=PAGE + 1, after=cursor)
    more = f"{items[PAGE - 1].opened!r}_{items[PAGE - 1].rating_id}" if len(items) > PAGE else ""
    return _page(request, user, "followups.html", title="差评整改", items=items[:PAGE], show=show, more=more)


def _visible(conn, rating_id: str, user: User):
    row = fstore.get(conn, rating_id)
    if row is None or not user.sees(row.window):
        raise HTTPException(404)   # another supervisor's follow-up does not exist for this one
    return row


@router.get("/{rating_id}", response_class=HTMLResponse)
def detail_page(request: Request, rating_id: str = PathParam(pattern=RATING_ID),
                user: User = Depends(READERS)) -> HTMLResponse:
    return _detail(request, user, rating_id)


def _detail(request: Request, user: User, rating_id: str, error: str = "", status: int = 200) -> HTMLResponse:
    now = _now(request)
    with request.app.state.store.read() as conn:
        _visible(conn, rating_id, user)
        d = fstore.detail(conn, rating_id, now)
    actions = allowed(d.row["state"]) if user.role in ACTORS else []
    return _page(request, user, "followup.html", status=status, title="差评整改详情", d=d, fu=d.row,
                 actions=actions, can_act=user.role in ACTORS, error=error)


def _acting(request: Request, user: User, csrf: str) -> None:
    if user.role not in ACTORS or not same_origin(request) or not csrf_ok(request, {"csrf": csrf}):
        raise HTTPException(403)


@router.post("/{rating_id}/step")
def step_post(request: Request, rating_id: str = PathParam(pattern=RATING_ID), action: str = Form(""),
              note: str = Form(""), csrf: str = Form(""), user: User = Depends(READERS)):
    _acting(request, user, csrf)
    now = _now(request)
    try:
        with request.app.state.store.write() as conn:
            _visible(conn, rating_id, user)
            fstore.transition(conn, rating_id, action, user.name, now, note)
            audit(conn, user.name, f"followup.{action}", rating_id, now=now)
    except IllegalStep as e:
        return _detail(request, user, rating_id, error=str(e), status=409)
    return RedirectResponse(f"/console/followups/{rating_id}", status_code=303)


@router.post("/{rating_id}/note")
def note_post(request: Request, rating_id: str = PathParam(pattern=RATING_ID), text: str = Form(""),
              csrf: str = Form(""), user: User = Depends(READERS)):
    _acting(request, user, csrf)
    now = _now(request)
    try:
        with request.app.state.store.write() as conn:
            _visible(conn, rating_id, user)
            fstore.add_note(conn, rating_id, user.name, text, now)
            audit(conn, user.name, "followup.note", rating_id, now=now)
    except IllegalStep as e:
        return _detail(request, user, rating_id, error=str(e), status=409)
    return RedirectResponse(f"/console/followups/{rating_id}", status_code=303)
