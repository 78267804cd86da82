"""The kiosk's screens. Each one is built once for a panel geometry, then `update(state)` shows a state.

Screens read what they show from the kiosk (`k`: translator, geometry, status, QR and photo caches)
and write nothing but events, through `k.submit(...)`; which screen is up is decided by
`ui.present.screen_for`, what happens next by the core's state machine.
"""
from __future__ import annotations

import math

from kivy.uix.boxlayout import BoxLayout
from kivy.uix.gridlayout import GridLayout
from kivy.uix.widget import Widget

from device.machine import Back, LevelPressed, ReasonsConfirmed, ReasonToggled, State
from protocol.values import LEVELS, Channel
from ui import present
from ui.hooks import ACTIONS
from ui.i18n import DOT, TICK
from ui.present import Screen
from ui.theme import PALETTE
from ui.widgets import Avatar, BigButton, CheckMark, LevelButton, Panel, PinPad, QrView, Text, TopBar, text_width


class BaseScreen(Panel):
    """A full-window page; `bar` is the top bar when the screen has one."""

    name: Screen
    has_bar = True

    def __init__(self, k):
        super().__init__(bg=PALETTE.page, orientation="vertical")
        self.k = k
        self.geo = k.geo
        self.bar: TopBar | None = TopBar(self.geo) if self.has_bar else None
        if self.bar is not None:
            self.add_widget(self.bar)
        self.build()

    def build(self) -> None:
        raise NotImplementedError

    def body(self, **kw) -> BoxLayout:
        g = self.geo.gap
        box = BoxLayout(padding=g * 1.5, spacing=g * 1.5, **kw)
        self.add_widget(box)
        return box

    def card(self, **kw) -> Panel:
        kw.setdefault("padding", self.geo.gap * 1.5)
        kw.setdefault("spacing", self.geo.gap)
        return Panel(bg=PALETTE.card, radius=self.geo.px(2), **kw)

    def update(self, state: State) -> None:
        if self.bar is not None:
            self.update_bar(state)

    def update_bar(self, state: State) -> None:
        k = self.k
        self.bar.show(present.window_title(k.t, state, k.window_id, k.window_name),
                      present.status_text(k.t, k.status), k.status.online, k.clock_text())

    def on_enter(self) -> None:
        """Called when the screen comes up (not on every update)."""


def level_row(screen: BaseScreen, height: float) -> tuple[BoxLayout, list[LevelButton]]:
    k, g = screen.k, screen.geo
    row = BoxLayout(orientation="horizontal", spacing=g.gap, size_hint_y=None, height=height)
    buttons = []
    for level in LEVELS:
        b = LevelButton(g, level, k.t.level(level),
                        lambda lv=level: k.submit(LevelPressed(lv, Channel.TOUCH)))
        row.add_widget(b)
        buttons.append(b)
    return row, buttons


def level_row_height(g) -> float:
    """Level buttons: at least the minimum target, taller on bigger panels."""
    return round(max(g.target, g.px(18), g.height * 0.2))


def qr_card(screen: BaseScreen, caption: str, width: float | None = None, lines: int = 2,
            padding: float | None = None) -> tuple[Panel, QrView, Text]:
    kw = {} if padding is None else {"padding": padding, "spacing": padding}
    c = screen.card(orientation="vertical", **kw)
    if width is not None:
        c.size_hint_x, c.width = None, width
    qr = QrView()
    text = Text(screen.geo, caption, role="caption", color=PALETTE.ink, halign="center", lines=lines)
    c.add_widget(qr)
    c.add_widget(text)
    return c, qr, text


class UnpairedScreen(BaseScreen):
    """Large pairing code and QR, device id, "请联系工作人员配对"."""

    name = Screen.UNPAIRED

    def build(self) -> None:
        g, t = self.geo, self.k.t
        body = self.body(orientation="horizontal")
        left = self.card(orientation="vertical")
        self.ask = Text(g, t("unpaired.ask"), role="headline", color=PALETTE.accent, lines=2, size_hint_y=1)
        self.code_label = Text(g, t("unpaired.code"), role="body", color=PALETTE.muted)
        self.code = Text(g, "", role="display", color=PALETTE.ink)
        self.device = Text(g, "", role="body", color=PALETTE.muted, shorten=True)
        for w in (self.ask, self.code_label, self.code, self.device):
            left.add_widget(w)
        side = min(g.height - g.bar_height - g.gap * 3, g.width * 0.42)
        right, self.qr, self.qr_caption = qr_card(self, t("unpaired.scan"), width=side * 0.9, lines=1)
        body.add_widget(left)
        body.add_widget(right)

    def update_bar(self, state: State) -> None:
        k = self.k
        self.bar.show(k.t("unpaired.title"), present.status_text(k.t, k.status), k.status.online, k.clock_text())

    def update(self, state: State) -> None:
        super().update(state)
        t, p = self.k.t, self.k.shown_pairing
        showing_code = p is not None and p.state == "code" and bool(p.code)
        self.ask.text = t("unpaired.ask" if showing_code or p is None else
                          present.PAIRING_STATES.get(p.state, "unpaired.ask"))
        self.code.text = spaced(p.code) if showing_code else ""
        self.code_label.opacity = 1 if showing_code else 0
        self.device.text = t("unpaired.device", id=self.k.device_id)
        self.qr.show(self.k.static_qr(p.qr_url) if showing_code and p.qr_url else None)


def spaced(code: str) -> str:
    """'482913' → '482 913': easier to read out and type."""
    return " ".join(code[i:i + 3] for i in range(0, len(code), 3)) if code.isdigit() else code


class IdleScreen(BaseScreen):
    """Window, staff on duty (photo, name, number), staff QR and hall QR; level buttons for a staff rating,
    or for the open case when its screen timed out before the citizen rated it."""

    name = Screen.IDLE

    def build(self) -> None:
        g, t = self.geo, self.k.t
        box = self.body(orientation="vertical")
        self.upper = BoxLayout(orientation="horizontal", spacing=g.gap * 1.5)
        box.add_widget(self.upper)
        self.staff_card = self.card(orientation="vertical")
        self.staff_title = Text(g, t("idle.staff"), role="caption", color=PALETTE.muted)
        who = BoxLayout(orientation="horizontal", spacing=g.gap * 2, size_hint_y=None, height=g.px(20))
        self.avatar = Avatar(g, size_hint_x=None, width=g.px(18))
        names = BoxLayout(orientation="vertical")
        self.staff_name = Text(g, "", role="headline", color=PALETTE.ink, shorten=True)
        self.staff_number = Text(g, "", role="body", color=PALETTE.muted, shorten=True)
        names.add_widget(Widget())
        names.add_widget(self.staff_name)
        names.add_widget(self.staff_number)
        names.add_widget(Widget())
        who.add_widget(self.avatar)
        who.add_widget(names)
        self.welcome = Text(g, t("idle.welcome"), role="body", color=PALETTE.accent, valign="top", size_hint_y=1)
        for w in (self.staff_title, who, self.welcome):
            self.staff_card.add_widget(w)
        self.upper.add_widget(self.staff_card)
        row_h = round(max(g.target, g.px(16)))  # the staff rating row is secondary: the minimum
        qr_side = min(g.height - g.bar_height - row_h - g.font("caption") * 1.3 - g.gap * 9, g.width * 0.29)
        self.staff_qr_card, self.staff_qr, _ = qr_card(self, t("idle.staff_qr"), width=qr_side, lines=1)
        self.hall_qr_card, self.hall_qr, _ = qr_card(self, t("idle.hall_qr"), width=qr_side, lines=1)
        self.rate_title = Text(g, t("idle.rate_staff"), role="caption", color=PALETTE.muted)
        self.levels, self.level_buttons = level_row(self, row_h)
        box.add_widget(self.rate_title)
        box.add_widget(self.levels)
        self._shown_qrs: tuple = ()
        self._levels_shown = True

    def update(self, state: State) -> None:
        super().update(state)
        k = self.k
        staff = state.staff
        if staff is not None:
            self.staff_name.text = staff.name
            self.staff_number.text = k.t("idle.number", number=staff.number) if staff.number else ""
            self.avatar.show(staff.name, k.photo(staff.photo))
            self.avatar.opacity = 1
        else:
            self.staff_name.text = k.t("idle.no_staff")
            self.staff_number.text = ""
            self.avatar.opacity = 0
        staff_url = present.staff_qr_url(k.ui.staff_qr_template, staff)
        hall_url = k.ui.hall_qr_url
        qrs = tuple(c for c, url in ((self.staff_qr_card, staff_url), (self.hall_qr_card, hall_url)) if url)
        if qrs != self._shown_qrs:
            for c in (self.staff_qr_card, self.hall_qr_card):
                if c.parent is not None:
                    self.upper.remove_widget(c)
            for c in qrs:
                self.upper.add_widget(c)
            self._shown_qrs = qrs
        self.staff_qr.show(k.static_qr(staff_url) if staff_url else None)
        self.hall_qr.show(k.static_qr(hall_url) if hall_url else None)
        rates = present.idle_levels(state)
        self.rate_title.text = k.t("case.prompt" if rates == "case" else "idle.rate_staff")
        offered = bool(rates)
        if offered != self._levels_shown:
            box = self.levels.parent or self.upper.parent
            if offered:
                box.add_widget(self.rate_title)
                box.add_widget(self.levels)
            else:
                box.remove_widget(self.rate_title)
                box.remove_widget(self.levels)
            self._levels_shown = offered
        for b in self.level_buttons:
            b.disabled = not present.accepts_input(state)


class CaseScreen(BaseScreen):
    """Service item, staff, masked applicant, the dynamic QR and five large level buttons."""

    name = Screen.CASE

    def build(self) -> None:
        g, t = self.geo, self.k.t
        box = self.body(orientation="vertical")
        upper = BoxLayout(orientation="horizontal", spacing=g.gap * 1.5)
        info = self.card(orientation="vertical", padding=g.gap, spacing=g.gap * 0.5)  # (all of it fits on 1024×600)
        self.item_label = Text(g, t("case.item"), role="caption", color=PALETTE.muted)
        self.item = Text(g, "", role="title", color=PALETTE.ink, lines=2)
        self.staff = Text(g, "", role="body", color=PALETTE.ink, shorten=True)
        self.applicant = Text(g, "", role="body", color=PALETTE.ink, shorten=True)
        self.prompt = Text(g, t("case.prompt"), role="title", color=PALETTE.accent, lines=1)
        for w in (self.item_label, self.item, self.staff, self.applicant, Widget(), self.prompt):
            info.add_widget(w)
        row_h = level_row_height(g)
        # 适老化: the dynamic QR as large as the panel allows (≥ 35 mm on the 7" 800×480 panel). The white
        # card is part of its quiet zone, so its padding is small; the caption takes one line when it fits.
        upper_h = g.height - g.bar_height - row_h - g.gap * 4.5
        pad = g.gap * 0.5
        caption = t("case.scan")
        caption_w = text_width(caption, g.font("caption")) + g.px(1)
        card_w = min(max(upper_h * 0.9, caption_w + 2 * pad), g.width * 0.45)
        lines = 1 if caption_w + 2 * pad <= card_w else 2
        qcard, self.qr, self.scan = qr_card(self, caption, width=card_w, lines=lines, padding=pad)
        upper.add_widget(info)
        upper.add_widget(qcard)
        box.add_widget(upper)
        self.levels, self.level_buttons = level_row(self, row_h)
        box.add_widget(self.levels)

    def update(self, state: State) -> None:
        super().update(state)
        case = state.case
        if case is not None:
            self.item.text = case.item_name
            self.staff.text = present.staff_line(self.k.t, case.staff)
            self.applicant.text = self.k.t("case.applicant", name=case.applicant_display)
        self.qr.show(state.qr.modules if state.qr is not None else None)
        self.scan.text = self.k.t("case.scan" if state.qr is not None else "case.no_qr")  # no signing key: no QR
        for b in self.level_buttons:
            b.disabled = not present.accepts_input(state)


class ReasonsScreen(BaseScreen):
    """The center's reasons as large multi-select choices (paged when they do not fit), back and confirm."""

    name = Screen.REASONS

    def build(self) -> None:
        g, t = self.geo, self.k.t
        box = BoxLayout(orientation="vertical", padding=g.gap, spacing=g.gap)
        self.add_widget(box)
        self.title = Text(g, t("reasons.title"), role="title", color=PALETTE.ink)
        box.add_widget(self.title)
        bottom_h = math.ceil(g.px(16))
        avail = g.height - g.bar_height - self.title.height - bottom_h - g.gap * 4
        self.cols = max(2, int(g.width_mm // 50))
        self.rows = max(1, int((avail + g.gap) // (g.target + g.gap)))
        self.avail = avail
        self.grid = GridLayout(cols=self.cols, spacing=g.gap, size_hint_y=None)
        box.add_widget(self.grid)
        box.add_widget(Widget())
        row = BoxLayout(orientation="horizontal", spacing=g.gap, size_hint_y=None, height=bottom_h)
        self.back = BigButton(g, t("reasons.back"), lambda: self.k.submit(Back()), bg=PALETTE.card,
                              fg=PALETTE.accent, border=PALETTE.border, size_hint_x=0.9)
        self.prev = BigButton(g, t("reasons.prev"), lambda: self.turn(-1), bg=PALETTE.card, fg=PALETTE.ink,
                              border=PALETTE.border, size_hint_x=0.8)
        self.hint = Text(g, "", role="caption", color=PALETTE.muted, halign="center", size_hint_y=1, lines=2)
        self.next = BigButton(g, t("reasons.next"), lambda: self.turn(1), bg=PALETTE.card, fg=PALETTE.ink,
                              border=PALETTE.border, size_hint_x=0.8)
        self.confirm = BigButton(g, t("reasons.confirm"), lambda: self.k.submit(ReasonsConfirmed()),
                                 size_hint_x=1.1)
        for w in (self.back, self.prev, self.hint, self.next, self.confirm):
            row.add_widget(w)
        box.add_widget(row)
        self.page = 0
        self._pages: list = []
        self._shown_page: tuple = ()
        self.toggles: dict[str, BigButton] = {}

    @property
    def per_page(self) -> int:
        return self.cols * self.rows

    def on_enter(self) -> None:
        self.page = 0

    def turn(self, delta: int) -> None:
        """Paging is the screen's own business (no event for the core)."""
        self.page = max(0, min(len(self._pages) - 1, self.page + delta))
        self.update(self.k.state)

    def update(self, state: State) -> None:
        super().update(state)
        t, g = self.k.t, self.geo
        reasons = state.catalog.reasons if state.catalog is not None else ()
        self._pages = present.pages(list(reasons), self.per_page)
        self.page = min(self.page, len(self._pages) - 1)
        page = self._pages[self.page]
        if page != self._shown_page:
            self.grid.clear_widgets()
            self.toggles = {}
            rows = max(1, math.ceil(len(page) / self.cols))
            row_h = min((self.avail - g.gap * (rows - 1)) / rows, g.px(26))
            self.grid.height = rows * row_h + g.gap * (rows - 1)
            for r in page:
                b = BigButton(g, "", lambda code=r.code: self.k.submit(ReasonToggled(code)), role="body",
                              size_hint_y=None, height=row_h)
                self.toggles[r.code] = b
                self.grid.add_widget(b)
            for _ in range(rows * self.cols - len(page)):
                self.grid.add_widget(Widget(size_hint_y=None, height=row_h))
            self._shown_page = page
        for r in page:
            b = self.toggles[r.code]
            on = r.code in state.selected
            b.text = (f"{TICK} " if on else "") + t.reason(r)
            if on:
                b.restyle(PALETTE.selected, PALETTE.on_selected)
            else:
                b.restyle(PALETTE.card, PALETTE.ink, PALETTE.border)
            b.disabled = not present.accepts_input(state)
        many = len(self._pages) > 1
        self.prev.opacity = self.next.opacity = 1 if many else 0
        self.prev.disabled = not many or self.page == 0
        self.next.disabled = not many or self.page >= len(self._pages) - 1
        if state.catalog is None:
            self.hint.text = t("reasons.none")
        elif many:
            self.hint.text = t("reasons.page", page=self.page + 1, pages=len(self._pages))
        else:
            self.hint.text = "" if state.selected else t("reasons.need_one")
        self.confirm.disabled = not state.selected or state.catalog is None or not present.accepts_input(state)
        self.back.disabled = not present.accepts_input(state)


class MessageScreen(BaseScreen):
    """A full-page message: the same layout for every thank-you, whatever the level."""

    has_bar = False
    title_key = ""
    sub_key = ""
    bg = PALETTE.bar
    fg = PALETTE.on_bar

    def build(self) -> None:
        g, t = self.geo, self.k.t
        self.bg_hex = self.bg
        box = BoxLayout(orientation="vertical", padding=g.px(8), spacing=g.gap * 2)
        self.add_widget(box)
        box.add_widget(Widget())
        self.mark = CheckMark(self.fg, size_hint_y=None, height=g.px(16))
        self.title = Text(g, t(self.title_key), role="display", color=self.fg, halign="center", lines=2)
        self.sub = Text(g, t(self.sub_key), role="title", color=self.fg, halign="center", lines=2)
        for w in (self.mark, self.title, self.sub):
            box.add_widget(w)
        box.add_widget(Widget())


class ThanksScreen(MessageScreen):
    name = Screen.THANKS
    title_key, sub_key = "thanks.title", "thanks.sub"


class RatedElsewhereScreen(MessageScreen):
    name = Screen.RATED_ELSEWHERE
    title_key, sub_key = "elsewhere.title", "elsewhere.sub"


class UnavailableScreen(BaseScreen):
    """The rating could not be stored: ask the citizen to scan the QR code instead (or, with no code to
    scan, to try again later or ask the staff)."""

    name = Screen.UNAVAILABLE

    def build(self) -> None:
        g, t = self.geo, self.k.t
        box = self.body(orientation="horizontal")
        left = self.card(orientation="vertical")
        left.add_widget(Widget())
        left.add_widget(Text(g, t("unavailable.title"), role="headline", color=PALETTE.ink, lines=2))
        self.sub = Text(g, t("unavailable.sub"), role="title", color=PALETTE.accent, lines=2)
        left.add_widget(self.sub)
        left.add_widget(Widget())
        side = min(g.height - g.bar_height - g.gap * 3, g.width * 0.42)
        self.qr_card, self.qr, _ = qr_card(self, t("case.scan"), width=side * 0.9)
        box.add_widget(left)
        box.add_widget(self.qr_card)

    def update(self, state: State) -> None:
        super().update(state)
        k = self.k
        if state.qr is not None:
            modules = state.qr.modules  # the case's own QR
        else:  # a staff rating: the staff member's static QR, if there is one
            url = present.staff_qr_url(k.ui.staff_qr_template, state.staff)
            modules = k.static_qr(url) if url else None
        self.qr.show(modules)
        self.qr_card.opacity = 1 if modules is not None else 0
        # no code to scan (no signing key, no staff QR): never send the citizen looking for one
        self.sub.text = k.t("unavailable.sub" if modules is not None else "unavailable.no_qr")


class PinScreen(BaseScreen):
    """The maintenance PIN: a numeric pad (no keyboard), wrong-PIN message, lock-out after many tries."""

    name = Screen.PIN

    def build(self) -> None:
        g, t = self.geo, self.k.t
        box = self.body(orientation="horizontal")
        left = self.card(orientation="vertical")
        self.title = Text(g, t("maint.pin_title"), role="title", color=PALETTE.ink, lines=2)
        self.dots = Text(g, "", role="headline", color=PALETTE.ink)
        self.message = Text(g, "", role="body", color=PALETTE.danger, lines=2)
        self.cancel = BigButton(g, t("maint.cancel"), self.k.maintenance.cancel, bg=PALETTE.card,
                                fg=PALETTE.accent, border=PALETTE.border, size_hint_y=None,
                                height=g.target + g.gap)
        for w in (self.title, self.dots, self.message, Widget(), self.cancel):
            left.add_widget(w)
        m = self.k.maintenance
        pad_w = min(g.width * 0.5, (g.height - g.bar_height - g.gap * 3) * 0.85)
        self.pad = PinPad(g, t, m.digit, m.delete, m.ok, size_hint_x=None, width=pad_w)
        box.add_widget(left)
        box.add_widget(self.pad)

    def update(self, state: State) -> None:
        super().update(state)
        m = self.k.maintenance
        self.dots.text = f"{DOT} " * len(m.entered) or " "
        self.message.text = self.k.t(m.message) if m.message else ""
        self.pad.set_enabled(not m.locked())


class MaintenanceScreen(BaseScreen):
    """Device id, firmware, broker, outbox and quarantine, last error, network; actions from hooks."""

    name = Screen.MAINTENANCE

    def build(self) -> None:
        g, t = self.geo, self.k.t
        box = self.body(orientation="vertical")
        info = self.card(orientation="vertical", spacing=0)
        self.rows: list[tuple[Text, Text]] = []
        for _ in self.k.maintenance.rows():
            line = BoxLayout(orientation="horizontal", spacing=g.gap * 2)
            label = Text(g, "", role="caption", color=PALETTE.muted, size_hint_x=0.3, size_hint_y=1, shorten=True)
            value = Text(g, "", role="caption", color=PALETTE.ink, size_hint_y=1, shorten=True)
            line.add_widget(label)
            line.add_widget(value)
            info.add_widget(line)
            self.rows.append((label, value))
        self.result = Text(g, "", role="caption", color=PALETTE.accent, shorten=True)
        info.add_widget(self.result)
        box.add_widget(info)
        row = BoxLayout(orientation="horizontal", spacing=g.gap, size_hint_y=None, height=math.ceil(g.px(16)))
        self.actions: dict[str, BigButton] = {}
        for action, key in ACTIONS.items():
            b = BigButton(g, t(key), lambda a=action: self.k.maintenance.run(a), bg=PALETTE.card,
                          fg=PALETTE.ink, border=PALETTE.border, role="caption")
            self.actions[action] = b
            row.add_widget(b)
        self.language = BigButton(g, t("maint.language"), self.k.maintenance.toggle_language, bg=PALETTE.card,
                                  fg=PALETTE.ink, border=PALETTE.border, role="caption")
        self.exit = BigButton(g, t("maint.exit"), self.k.maintenance.cancel, role="caption")
        row.add_widget(self.language)
        row.add_widget(self.exit)
        box.add_widget(row)

    def update(self, state: State) -> None:
        super().update(state)
        k = self.k
        for (label, value), (name, text) in zip(self.rows, k.maintenance.rows()):
            label.text, value.text = name, text
        for action, b in self.actions.items():
            enabled, b.text = k.maintenance.action_state(action)
            b.disabled = not enabled
        self.result.text = k.maintenance.result


class FallbackScreen(Panel):
    """Shown only if the other screens keep failing: nothing in it can fail."""

    name = Screen.FALLBACK

    def __init__(self, k):
        super().__init__(bg=PALETTE.bar)
        from kivy.uix.label import Label
        from ui.theme import rgba
        self.add_widget(Label(text=k.t("fallback.wait"), font_size=k.geo.font("display"),
                              color=rgba(PALETTE.on_bar)))

    def update(self, state: State) -> None:
        pass

    def on_enter(self) -> None:
        pass


SCREENS = {cls.name: cls for cls in (UnpairedScreen, IdleScreen, CaseScreen, ReasonsScreen, ThanksScreen,
                                     RatedElsewhereScreen, UnavailableScreen, PinScreen, MaintenanceScreen,
                                     FallbackScreen)}
PROMPTS = {Screen.CASE: "case.prompt", Screen.REASONS: "reasons.title", Screen.THANKS: "thanks.title",
           Screen.RATED_ELSEWHERE: "elsewhere.title", Screen.UNAVAILABLE: "unavailable.title"}
