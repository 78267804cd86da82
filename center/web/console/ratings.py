"""The supervisors' ratings pages (served on the one app, laid out by center/web/console/layout.py):

- `GET /console/ratings` — today's ratings, live: per window and per staff member (counts per level,
  满意率, 差评率) and the latest 50; the page reloads itself every 30 s (`<meta http-equiv=refresh>` and a
  `Refresh` header: no script);
- `GET /console/ratings/report?month=YYYY-MM` — the per-staff monthly report, with the month's CSV.

Every figure comes from center/queries.py (the data API's query layer) within the user's windows: a
supervisor sees their windows only; admins and auditors the whole center. No applicant data is shown.
"""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from center.accounts import User
from center.queries import LEVEL_NAMES, ZH_LEVELS, QueryError, Queries
from center.web.auth import require
from center.web.console.layout import add_nav, render

REFRESH_S = 30
CHANNEL_ZH = {"touch": "评价器", "keys": "按键", "qr": "扫码", "sms": "短信", "staff_qr": "人员码",
              "hall_qr": "大厅码", "other": "其他"}
ROLES = ("admin", "supervisor", "auditor")


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f}%"


def ratings_router(queries: Queries, center: str) -> APIRouter:
    r = APIRouter(prefix="/console/ratings", include_in_schema=False)
    viewer = require(*ROLES)
    add_nav("/console/ratings", "今日评价 Today", ROLES)
    add_nav("/console/ratings/report", "月报 Monthly", ROLES)
    common = dict(levels=LEVEL_NAMES, levels_zh=ZH_LEVELS, channels_zh=CHANNEL_ZH, percent=percent)

    @r.get("")
    def today(request: Request, user: User = Depends(viewer)) -> Response:
        data = queries.today(center, scope=user.windows)
        reasons = queries.reason_names(center)
        return render(request, user, "今日评价 Today's ratings", template="ratings_today.html",
                      headers={"Refresh": str(REFRESH_S)}, refresh=REFRESH_S, data=data, reasons=reasons,
                      shown_at=datetime.now(queries.tz).strftime("%H:%M:%S"), **common)

    @r.get("/report")
    def report(request: Request, user: User = Depends(viewer)) -> Response:
        month = request.query_params.get("month") or datetime.now(queries.tz).strftime("%Y-%m")
        try:
            f = queries.month_filters(center, month, user.windows)
        except QueryError as e:
            return render(request, user, "月报 Monthly report", template="ratings_report.html", status=400,
                          error=str(e), month="", groups=[], csv="", **common)
        groups = queries.summary("staff", f)
        csv = (f"/api/v1/ratings.csv?center={center}&from={f.start.isoformat()}&to={f.end.isoformat()}"
               "&headers=zh")
        return render(request, user, "月报 Monthly report", template="ratings_report.html", error="", month=month,
                      groups=groups, csv=csv, **common)

    return r
