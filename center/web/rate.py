"""The citizen's phone pages: the routes behind every code a phone can scan or tap.

| path | what opens it | rated through |
|---|---|---|
| `GET/POST /r?t=<token>` | the terminal's dynamic QR code (protocol/qrtoken.py) | `Desk.rate_case(..., "qr")` |
| `GET/POST /s/<token>` | the SMS follow-up's single-use link | `Desk.rate_case(..., "sms")` |
| `GET/POST /p/s/<token>` | a staff member's printed code (人员评价, center/web/links.py) | `Desk.rate_staff` |
| `GET/POST /p/h/<token>` | the center's printed hall code (大厅评价) | `Desk.rate_hall` |

Each request is checked again from its token (a POST trusts nothing the GET saw). Whatever is wrong with a
token — malformed, tampered, unknown key, another center, unknown case, revoked code — gets the same
「二维码无效」 page: nothing tells an attacker which. The pages need no JavaScript: plain forms, validated
here. POST handlers only read the form (async); the work (photos, the Desk, which is synchronous) runs in
the thread pool.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from jinja2 import Environment, FileSystemLoader
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse, RedirectResponse, Response

from center.desk import Catalog, Desk, Outcome, PhoneRating, StoredPhoto
from center.web import links, photos
from center.web.limits import PhoneCookie
from center.web.settings import WebSettings
from protocol import qrtoken
from protocol.values import LEVELS, Level

HERE = Path(__file__).resolve().parent
MAX_TEXT = 500
GENERIC_NAME = "政务服务评价"   # the page header when the center is unknown or must not be named

# The fixed pages: (title, lines, HTTP status, good). Their bodies never depend on the request.
NOTICES: dict[str, tuple[str, tuple[str, ...], int, bool]] = {
    "invalid": ("二维码无效", ("请在窗口评价器上评价，或联系工作人员",), 404, False),
    "expired": ("二维码已过期", ("请在窗口评价器上评价，或联系工作人员",), 410, False),
    "link_invalid": ("链接无效", ("请在窗口评价器上评价，或联系工作人员",), 404, False),
    "link_expired": ("链接已过期", ("评价链接的有效期已过，感谢您的关注",), 410, False),
    "rated": ("该办件已评价", ("感谢您的参与",), 409, True),
    "thanks": ("谢谢您的评价！", ("您的评价已记录，我们将持续改进服务",), 200, True),
    "limited": ("您已评价过", ("感谢您的参与",), 429, True),
    "refused": ("评价未能提交", ("请重新扫码评价，或在窗口评价器上评价",), 400, False),
    "forbidden": ("请求无效", ("请重新扫码后在本页面评价",), 403, False),
    "too_big": ("提交的内容太大", ("照片太大或太多，请减少照片后重新扫码评价",), 413, False),
    "bad_request": ("请求无效", ("请重新扫码评价",), 400, False),
    "not_found": ("页面不存在", ("请扫描评价二维码进入评价页面",), 404, False),
    "busy": ("系统繁忙", ("请稍后再试，或在窗口评价器上评价",), 500, False),
}

ERR_LEVEL = "请选择满意程度"
ERR_REASONS = "请选择不满意的原因"
ERR_REASONS_UNKNOWN = "原因选项已更新，请重新选择不满意的原因"
ERR_TEXT = f"留言不能超过{MAX_TEXT}字"
PHOTOS_AGAIN = "（请重新选择照片）"


class Pages:
    """The templates, with the stylesheet inlined so that a first load is one request."""

    def __init__(self) -> None:
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=True,
                               trim_blocks=True, lstrip_blocks=True)
        css = (HERE / "static" / "phone.css").read_text("utf-8")
        css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
        self.css = Markup(re.sub(r"\s*\n\s*", "", css))

    def html(self, template: str, status: int = 200, **ctx) -> HTMLResponse:
        ctx.setdefault("center_name", GENERIC_NAME)
        body = self.env.get_template(template).render(css=self.css, **ctx)
        return HTMLResponse(body, status_code=status)

    def notice(self, kind: str, extra: tuple[str, ...] = (), center_name: str = GENERIC_NAME) -> HTMLResponse:
        title, lines, status, good = NOTICES[kind]
        return self.html("notice.html", status, title=title, lines=lines + extra, good=good,
                         center_name=center_name)


# ---- the form, checked here (server side: the page has no JavaScript) -----------------------------------

@dataclass(frozen=True)
class Filled:
    """What the citizen chose, kept when the form comes back with a message."""
    level: str = ""
    reasons: tuple[str, ...] = ()
    text: str = ""


def clean_text(raw: str) -> str:
    """Line breaks as \\n, control characters (and bidi/format characters) removed, ends stripped."""
    raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c for c in raw if c == "\n" or unicodedata.category(c) not in ("Cc", "Cf", "Cs")).strip()


def check_form(level: str, reasons: list[str], text: str, catalog: Catalog | None) -> tuple[Filled, str]:
    """(what to keep, the error message or "" when the form is good)."""
    text = clean_text(text)
    seen: list[str] = []
    for code in reasons:
        if code not in seen and len(seen) < 64:
            seen.append(code)
    filled = Filled(level if level in {lv.value for lv in LEVELS} else "", tuple(seen), text)
    if not filled.level:
        return filled, ERR_LEVEL
    if Level(filled.level).is_bad:
        known = {r.code for r in catalog.reasons} if catalog else set()
        if not filled.reasons:
            return filled, ERR_REASONS
        if not set(filled.reasons) <= known:
            return Filled(filled.level, tuple(c for c in filled.reasons if c in known), text), ERR_REASONS_UNKNOWN
    else:
        filled = Filled(filled.level, (), text)  # reasons ticked before choosing a good level: dropped
    if len(text) > MAX_TEXT:
        return filled, ERR_TEXT
    return filled, ""


# ---- what a token opens -------------------------------------------------------------------------------

@dataclass
class Target:
    """A verified token's form: what it shows and how a rating through it is stored."""
    center: str
    center_name: str
    heading: str
    facts: list[tuple[str, str]]
    action: str                              # the form's URL
    token: str                               # hidden field `t` (dynamic QR only; others carry it in the path)
    rate: Callable[[PhoneRating, str, str], Outcome]   # the Desk call: (rating, client key, address key)
    static: bool = False                     # staff / hall: the phone cookie and address limits apply
    limited_lines: tuple[str, ...] = ()


def _date(iso: str) -> str:
    return iso[:10] if re.fullmatch(r"\d{4}-\d{2}-\d{2}.*", iso or "") else ""


def _center_name(desk: Desk, center: str) -> str:
    hall = desk.hall(center)
    return hall.name if hall and hall.name else GENERIC_NAME


def _hours(seconds: int) -> str:
    return f"{seconds // 3600}小时" if seconds >= 3600 else f"{max(1, seconds // 60)}分钟"


class Resolver:
    """Token → Target, or the notice page saying why not. Called on every GET and POST."""

    def __init__(self, desk: Desk, settings: WebSettings, pages: Pages):
        self.desk, self.settings, self.pages = desk, settings, pages

    def qr(self, token: str) -> Target | Response:
        try:
            claims = qrtoken.verify(token, self.settings.qr_keys)
        except qrtoken.TokenError as e:
            return self.pages.notice("expired" if e.reason == "expired" else "invalid")
        if claims.center not in self.settings.centers:
            return self.pages.notice("invalid")
        case = self.desk.case(claims.center, claims.case)
        if case is None or case.window != claims.window or case.staff_id != claims.staff:
            return self.pages.notice("invalid")
        name = _center_name(self.desk, case.center)
        if case.rated:
            return self.pages.notice("rated", center_name=name)
        return Target(case.center, name, "请您对本次服务进行评价", self._case_facts(case), "/r", token,
                      lambda rating, _c, _a: self.desk.rate_case(case.center, case.case_id, "qr", rating,
                                                                 window=claims.window, staff=claims.staff))

    def sms(self, token: str) -> Target | Response:
        link = self.desk.sms_link(token) if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", token) else None
        if link is None or link.center not in self.settings.centers:
            return self.pages.notice("link_invalid")
        if link.state == "expired":
            return self.pages.notice("link_expired")
        case = self.desk.case(link.center, link.case_id)
        if case is None:
            return self.pages.notice("link_invalid")
        name = _center_name(self.desk, case.center)
        if link.state != "ok" or case.rated:
            return self.pages.notice("rated", center_name=name)
        return Target(case.center, name, "请您对本次服务进行评价", self._case_facts(case), f"/s/{token}", "",
                      lambda rating, _c, _a: self.desk.rate_case(case.center, case.case_id, "sms", rating,
                                                                 window=case.window, staff=case.staff_id,
                                                                 link_token=token))

    def static(self, kind: str, token: str) -> Target | Response:
        try:
            claims = links.verify(token, self.settings.static_keys)
        except qrtoken.TokenError:
            return self.pages.notice("invalid")
        if claims.kind != kind or claims.center not in self.settings.centers:
            return self.pages.notice("invalid")
        if kind == "staff":
            return self._staff(claims, token)
        return self._hall(claims, token)

    def _staff(self, claims: links.StaticClaims, token: str) -> Target | Response:
        person = self.desk.staff(claims.center, claims.target)
        if person is None or person.revoked or person.code_gen != claims.gen:
            return self.pages.notice("invalid")
        window = person.window_name or person.window
        facts = [("工作人员", person.name), ("工号", person.number), ("窗口", window), ("职务", person.title)]
        every = _hours(self.desk.limits.staff_per_client_s)
        return Target(claims.center, _center_name(self.desk, claims.center), "请为工作人员的服务评价",
                      [(label, value) for label, value in facts if value], f"/p/s/{token}", "",
                      lambda r, client, addr: self.desk.rate_staff(claims.center, claims.target, r, client=client,
                                                                   addr=addr),
                      static=True, limited_lines=(f"同一部手机{every}内只能为同一位工作人员评价一次",))

    def _hall(self, claims: links.StaticClaims, token: str) -> Target | Response:
        hall = self.desk.hall(claims.center)
        if hall is None or hall.code_gen != claims.gen:
            return self.pages.notice("invalid")
        every = _hours(self.desk.limits.hall_per_client_s)
        return Target(claims.center, hall.name or GENERIC_NAME, "请为本大厅的服务评价",
                      [("服务大厅", hall.name)] if hall.name else [], f"/p/h/{token}", "",
                      lambda r, client, addr: self.desk.rate_hall(claims.center, r, client=client, addr=addr),
                      static=True, limited_lines=(f"同一部手机{every}内只能为本大厅评价一次",))

    @staticmethod
    def _case_facts(case) -> list[tuple[str, str]]:
        facts = [("事项", case.item_name)] if case.item_name else []
        facts.append(("窗口", case.window_name or case.window))
        if case.staff_name:
            facts.append(("工作人员", f"{case.staff_name}（工号 {case.staff_number}）" if case.staff_number
                          else case.staff_name))
        if _date(case.opened_at):
            facts.append(("日期", _date(case.opened_at)))
        return facts


# ---- the pages and the submit step --------------------------------------------------------------------

def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _delete(saved: list[StoredPhoto], photo_dir: Path) -> None:
    for p in saved:
        (photo_dir / p.name).unlink(missing_ok=True)


def same_origin(request: Request, settings: WebSettings) -> bool:
    """A browser's Origin must be this site (as the browser reached it, or the public base); absent is fine:
    the token in the form is what a forger cannot have."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    netloc = urlsplit(origin).netloc if origin != "null" else ""
    ours = {request.headers.get("host", "")} | ({urlsplit(settings.public_base).netloc} if settings.public_base else set())
    return bool(netloc) and netloc in ours


class Phone:
    """Everything the routes share: one per app (`app.state.phone`)."""

    def __init__(self, desk: Desk, settings: WebSettings):
        self.desk, self.settings = desk, settings
        self.pages = Pages()
        self.resolver = Resolver(desk, settings, self.pages)
        self.cookie = PhoneCookie(settings.cookie_secret, settings.https)

    def form(self, target: Target | Response, filled: Filled = Filled(), error: str = "",
             status: int = 200) -> Response:
        if isinstance(target, Response):
            return target
        catalog = self.desk.catalog(target.center)
        groups: dict[str, list] = {}
        for reason in catalog.reasons if catalog else ():
            groups.setdefault(reason.group, []).append(reason)
        return self.pages.html(
            "rate.html", status, title=target.heading, center_name=target.center_name, heading=target.heading,
            facts=target.facts, error=error, action=target.action, token=target.token, filled=filled,
            levels=[(lv.value, lv.zh, lv.is_bad) for lv in LEVELS], groups=list(groups.items()),
            max_photos=self.settings.photo_limits.max_count)

    def submit(self, request: Request, form: FormData, target: Target | Response) -> Response:
        """Check the form, keep the photos, store the rating through the Desk: all or nothing."""
        if isinstance(target, Response):
            return target
        limits, photo_dir = self.settings.photo_limits, Path(self.settings.photo_dir)
        uploads = [u for u in form.getlist("photos") if isinstance(u, UploadFile) and (u.filename or u.size)]
        again = PHOTOS_AGAIN if uploads else ""
        filled, error = check_form(_field(form, "level"), [v for v in form.getlist("reasons") if isinstance(v, str)],
                                   _field(form, "text"), self.desk.catalog(target.center))
        if error:
            return self.form(target, filled, error + again, 400)
        try:
            photos.check_count(len(uploads), limits)
            encoded = [photos.reencode(u.file.read(limits.max_bytes + 1), limits) for u in uploads]
        except photos.PhotoError as e:
            return self.form(target, filled, e.reason + again, 400)
        cid = self.cookie.read(request) if target.static else None
        fresh = target.static and cid is None
        cid = cid or self.cookie.new_id()
        client, addr = (self.cookie.client_key(cid), self.cookie.addr_key(request)) if target.static else ("", "")
        saved: list[StoredPhoto] = []
        try:
            for jpeg, _, _ in encoded:
                saved.append(photos.save(jpeg, photo_dir))
            outcome = target.rate(PhoneRating(filled.level, filled.reasons, filled.text, tuple(saved)), client, addr)
        except BaseException:
            _delete(saved, photo_dir)
            raise
        if outcome.status != "stored":
            _delete(saved, photo_dir)
        if outcome.status == "refused" and outcome.reason == "reasons":   # the catalog changed meanwhile
            return self.form(target, Filled(filled.level, (), filled.text), ERR_REASONS_UNKNOWN + again, 400)
        response = self._outcome(target, outcome)
        if fresh:
            self.cookie.set(response, cid)
        return response

    def _outcome(self, target: Target, outcome: Outcome) -> Response:
        if outcome.status == "stored":
            return RedirectResponse(f"/thanks?c={target.center}", status_code=303)
        if outcome.status == "already_rated":
            return self.pages.notice("rated", center_name=target.center_name)
        if outcome.status == "limited":
            return self.pages.notice("limited", target.limited_lines, center_name=target.center_name)
        if "expired" in outcome.reason:   # an SMS link that died between the page and the submit
            return self.pages.notice("link_expired", center_name=target.center_name)
        if "used" in outcome.reason or "rated" in outcome.reason:
            return self.pages.notice("rated", center_name=target.center_name)
        return self.pages.notice("refused", center_name=target.center_name)


def phone(request: Request) -> Phone:
    return request.app.state.phone


async def read_form(request: Request) -> FormData:
    """The posted form, within bounds (a bigger or malformed one is an HTTPException: the error page)."""
    if not same_origin(request, phone(request).settings):
        raise HTTPException(403)
    max_files = phone(request).settings.photo_limits.max_count + 3   # a few more: refused with a reason
    return await request.form(max_files=max_files, max_fields=200, max_part_size=64 * 1024)


async def _post(request: Request, resolve: Callable[[Phone, FormData], Target | Response]) -> Response:
    form = await read_form(request)
    try:
        ph = phone(request)
        return await run_in_threadpool(lambda: ph.submit(request, form, resolve(ph, form)))
    finally:
        await form.close()


router = APIRouter(include_in_schema=False)  # HTML pages: not part of the documented API
# The pages are `async def` and call the Desk directly: a page is a few indexed reads on a local
# database (well under a millisecond), cheaper than the hop to a worker thread and back. Submits, which
# re-encode photos and wait for a durable commit, go to the thread pool (`_post`).


@router.get("/r")
async def qr_page(request: Request, t: str = "") -> Response:
    ph = phone(request)
    return ph.form(ph.resolver.qr(t))


@router.post("/r")
async def qr_submit(request: Request) -> Response:
    return await _post(request, lambda ph, form: ph.resolver.qr(_field(form, "t")))


@router.get("/s/{token}")
async def sms_page(request: Request, token: str) -> Response:
    ph = phone(request)
    return ph.form(ph.resolver.sms(token))


@router.post("/s/{token}")
async def sms_submit(request: Request, token: str) -> Response:
    return await _post(request, lambda ph, form: ph.resolver.sms(token))


def _static_page(request: Request, kind: str, token: str) -> Response:
    ph = phone(request)
    response = ph.form(ph.resolver.static(kind, token))
    if ph.cookie.read(request) is None:
        ph.cookie.set(response, ph.cookie.new_id())
    return response


@router.get("/p/s/{token}")
async def staff_page(request: Request, token: str) -> Response:
    return _static_page(request, "staff", token)


@router.post("/p/s/{token}")
async def staff_submit(request: Request, token: str) -> Response:
    return await _post(request, lambda ph, form: ph.resolver.static("staff", token))


@router.get("/p/h/{token}")
async def hall_page(request: Request, token: str) -> Response:
    return _static_page(request, "hall", token)


@router.post("/p/h/{token}")
async def hall_submit(request: Request, token: str) -> Response:
    return await _post(request, lambda ph, form: ph.resolver.static("hall", token))


@router.get("/thanks")
async def thanks(request: Request, c: str = "") -> Response:
    ph = phone(request)
    name = _center_name(ph.desk, c) if c in ph.settings.centers else GENERIC_NAME
    return ph.pages.notice("thanks", center_name=name)
