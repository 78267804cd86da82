"""The one page layout of the staff console (sign-in, terminals, users, audit, and the ratings and follow-up
pages of other rooms): a header with the center's name and the pages the user's role may open, the CSS
inlined (the app's CSP allows inline styles and nothing from elsewhere), no scripts.

`render(request, user, title, body_html=…)` or `render(request, user, title, template="x.html", **context)`
→ an HTMLResponse. Templates live in center/web/console/templates/ and are autoescaped.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from fastapi import Request
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.responses import HTMLResponse

from center.accounts import User, printable

HERE = Path(__file__).parent
CSS = (HERE / "static" / "console.css").read_text("utf-8")

# (path, label, roles that see the link). Other rooms add theirs with `add_nav`.
NAV: list[tuple[str, str, tuple[str, ...]]] = [
    ("/console/", "终端 Terminals", ("admin", "auditor")),
    ("/console/users", "用户 Users", ("admin",)),
    ("/console/audit", "审计 Audit", ("admin", "auditor")),
]

env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                  trim_blocks=True, lstrip_blocks=True)


def when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "—"


env.filters["when"] = when
env.filters["printable"] = printable


def add_nav(path: str, label: str, roles: tuple[str, ...]) -> None:
    """A link in every page's header for `roles` (e.g. the ratings pages for supervisors)."""
    if all(p != path for p, _, _ in NAV):
        NAV.append((path, label, roles))


def render(request: Request, user: User | None, title: str, body_html: str | None = None, *,
           template: str | None = None, status: int = 200, headers: dict[str, str] | None = None,
           **context) -> HTMLResponse:
    """A whole console page. `body_html` is inserted as it is (escape what you put in it); a `template`
    extends "base.html" and gets `context`, `user`, `csrf` and `title`."""
    csrf = getattr(request.state, "csrf", "")
    center = getattr(request.app.state, "console_center_name", "") or "政务服务中心"
    common = dict(request=request, user=user, csrf=csrf, title=title, center=center, css=Markup(CSS),
                  nav=[(p, label) for p, label, roles in NAV if user is not None and user.role in roles],
                  path=request.url.path)
    if template is None:
        html = env.get_template("base.html").render(**common, body=Markup(body_html or ""))
    else:
        html = env.get_template(template).render(**common, **context)
    return HTMLResponse(html, status_code=status, headers=headers)
