# The keypad's state machine: device/machine.py's rules in plain MicroPython (no dataclasses, enums).
# Events in, effects out, no I/O, no clock: one case one rating, the repeat guard, unrated follow-ups,
# rated elsewhere, staff ratings when idle. tests/keypad/ runs both machines on the same random event
# streams and requires the same records.
#
# Events (tuples): ("case_opened", case, already_rated)  case = {"id", "item_code", "staff", "token"}
#   ("case_closed", id) ("case_cleared",) ("rated_elsewhere", id) ("duty", staff_id or None)
#   ("catalog", version, codes) ("settings", dict) ("level", level, channel) ("reason", code)
#   ("confirm",) ("back",) ("tick",) ("committed", rid) ("commit_failed", reason)
# Effects (tuples): ("commit", draft) ("unrated", case) ("ignored", event, reason)
#   draft = {"kind", "level", "channel", "staff", "case", "reasons", "catalog"}

IDLE, CASE, REASONS, COMMITTING, THANKS, RATED_ELSEWHERE, UNAVAILABLE = (
    "idle", "case", "reasons", "committing", "thanks", "rated_elsewhere", "unavailable")
BAD = ("dissatisfied", "very_dissatisfied")
RECENT = 64
DEFAULTS = {"case_timeout_s": 120, "reasons_timeout_s": 60, "thanks_s": 5, "staff_rating_when_idle": False,
            "repeat_guard_s": 10}


class Machine:
    def __init__(self, settings=None):
        self.settings = dict(DEFAULTS)
        self.settings.update(settings or {})
        self.phase = IDLE
        self.case = None
        self.case_closed = False
        self.case_rated = False
        self.staff = None
        self.catalog = None        # (version, set of codes)
        self.kind = ""
        self.level = None
        self.channel = None
        self.selected = set()
        self.deadline = None
        self.guard_until = 0
        self.last_rating_id = ""
        self.recently_rated = []

    def step(self, ev, now):
        h = getattr(self, "_on_" + ev[0], None)
        if h is None:
            return [("ignored", ev[0], "unknown event")]
        return h(ev, now)

    # ---- helpers ------------------------------------------------------------------------------------

    def _to_idle(self):
        self.phase, self.kind, self.level, self.channel = IDLE, "", None, None
        self.selected = set()
        self.deadline = None

    def _drop_case(self):
        self.case, self.case_rated, self.case_closed = None, False, False

    def _start(self, ev, kind, now):
        self.kind, self.level, self.channel = kind, ev[1], ev[2]
        self.selected = set()
        if ev[1] in BAD:
            self.phase = REASONS
            self.deadline = now + self.settings["reasons_timeout_s"]
            return []
        return self._commit()

    def _commit(self):
        case = self.case if self.kind == "case" else None
        staff = case["staff"] if case else self.staff
        reasons = sorted(self.selected)
        draft = {"kind": self.kind, "level": self.level, "channel": self.channel, "staff": staff, "case": case,
                 "reasons": reasons, "catalog": self.catalog[0] if reasons and self.catalog else ""}
        self.phase, self.deadline = COMMITTING, None
        return [("commit", draft)]

    def _back_to_case_or_idle(self, now):
        if self.kind == "case" and self.case is not None and not self.case_rated and not self.case_closed:
            self._to_idle()
            self.phase = CASE
            self.deadline = now + self.settings["case_timeout_s"]
        else:
            self._to_idle()

    def _close_if_pending(self):
        if self.case is not None and self.case_closed and self.phase != REASONS:
            effects = [] if self.case_rated else [("unrated", self.case)]
            self._drop_case()
            return effects
        return []

    # ---- events -------------------------------------------------------------------------------------

    def _on_case_opened(self, ev, now):
        case, already = ev[1], ev[2]
        if self.case is not None and self.case["id"] == case["id"]:
            return [("ignored", "case_opened", "case already shown")]
        if self.phase in (REASONS, COMMITTING):
            return [("ignored", "case_opened", "a citizen is still rating the previous case")]
        effects = []
        if self.case is not None and not self.case_rated:
            effects.append(("unrated", self.case))
        self._to_idle()
        self.case, self.case_closed = case, False
        if already or case["id"] in self.recently_rated:
            self.case_rated = True
            return effects + [("ignored", "case_opened", "case already rated")]
        self.case_rated = False
        self.phase, self.deadline, self.guard_until = CASE, now + self.settings["case_timeout_s"], 0
        return effects

    def _on_case_closed(self, ev, now):
        if self.case is None or self.case["id"] != ev[1]:
            return [("ignored", "case_closed", "not the open case")]
        if self.phase in (REASONS, COMMITTING) and self.kind == "case":
            self.case_closed = True
            return []
        effects = [] if self.case_rated else [("unrated", self.case)]
        if self.phase == CASE:
            self._to_idle()
        self._drop_case()
        return effects

    def _on_case_cleared(self, ev, now):
        if self.case is None:
            return [("ignored", "case_cleared", "no open case")]
        if self.phase in (REASONS, COMMITTING) and self.kind == "case":
            self.case_closed = self.case_rated = True
            return []
        if self.phase == CASE:
            self._to_idle()
        self._drop_case()
        return []

    def _on_rated_elsewhere(self, ev, now):
        if self.case is None or self.case["id"] != ev[1]:
            return [("ignored", "rated_elsewhere", "not the open case")]
        if self.phase == COMMITTING or self.case_rated or self.kind == "staff":
            self.case_rated = True
            return []
        self._to_idle()
        self.phase, self.case_rated, self.deadline = RATED_ELSEWHERE, True, now + self.settings["thanks_s"]
        return []

    def _on_duty(self, ev, now):
        self.staff = ev[1]
        return []

    def _on_catalog(self, ev, now):
        self.catalog = (ev[1], set(ev[2]))
        self.selected = set(c for c in self.selected if c in self.catalog[1])
        return []

    def _on_settings(self, ev, now):
        self.settings = dict(DEFAULTS)
        self.settings.update(ev[1])
        return []

    def _on_level(self, ev, now):
        if self.phase == CASE:
            return self._start(ev, "case", now)
        if self.phase == IDLE:
            if self.case is not None and not self.case_rated and not self.case_closed:
                return self._start(ev, "case", now)  # its screen timed out; the case is still open
            if now < self.guard_until:
                return [("ignored", "level", "repeat press after a rating")]
            if not self.settings["staff_rating_when_idle"]:
                return [("ignored", "level", "no open case and staff ratings are off")]
            if self.staff is None:
                return [("ignored", "level", "no open case and no staff on duty")]
            return self._start(ev, "staff", now)
        return [("ignored", "level", "not taking levels in " + self.phase)]

    def _on_reason(self, ev, now):
        if self.phase != REASONS:
            return [("ignored", "reason", "no reasons shown")]
        if self.catalog is None or ev[1] not in self.catalog[1]:
            return [("ignored", "reason", "code not in the current catalog")]
        self.selected = self.selected ^ {ev[1]}
        self.deadline = now + self.settings["reasons_timeout_s"]
        return []

    def _on_confirm(self, ev, now):
        if self.phase != REASONS:
            return [("ignored", "confirm", "no reasons shown")]
        if self.catalog is None:
            return [("ignored", "confirm", "no reason catalog from the center yet")]
        if not self.selected:
            return [("ignored", "confirm", "a bad rating needs at least one reason")]
        return self._commit()

    def _on_back(self, ev, now):
        if self.phase != REASONS:
            return [("ignored", "back", "nothing to go back from")]
        self._back_to_case_or_idle(now)
        return self._close_if_pending()

    def _on_tick(self, ev, now):
        if self.deadline is None or now < self.deadline:
            return []
        if self.phase in (REASONS, UNAVAILABLE):
            self._back_to_case_or_idle(now)
        else:
            self._to_idle()
        return self._close_if_pending()

    def _on_committed(self, ev, now):
        if self.phase != COMMITTING:
            return [("ignored", "committed", "no commit pending")]
        self.case_rated = self.case_rated or self.kind == "case"
        if self.kind == "case" and self.case:
            self.recently_rated = (self.recently_rated + [self.case["id"]])[-RECENT:]
        s = self.settings
        self.phase, self.deadline = THANKS, now + s["thanks_s"]
        self.guard_until = now + s["thanks_s"] + s["repeat_guard_s"]
        self.last_rating_id = ev[1]
        self.selected = set()
        return self._close_if_pending()

    def _on_commit_failed(self, ev, now):
        if self.phase != COMMITTING:
            return [("ignored", "commit_failed", "no commit pending")]
        self.phase, self.deadline = UNAVAILABLE, now + self.settings["thanks_s"]
        return []
