"""From core state to what the screen shows: pure functions, no Kivy, no decisions of the business.

The state machine (`device.machine`) decides; this module only picks the screen for a state and
prepares texts, so widgets stay dumb and the rules can be tested without a window.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Iterable, Sequence

from device.machine import Phase, State
from device.port import Snapshot
from device.model import Reason, Staff
from ui.i18n import SEP, Translator


@dataclass(frozen=True)
class PairingInfo:
    """Set while the terminal is not rating at a window (filled by provisioning); None = paired.

    `state` is `code` while a pairing code is shown; other states (`connecting`, `refused`, `retired`,
    `unpaired`, `revoked`) show a sentence instead of the code.
    """

    code: str
    qr_url: str = ""
    state: str = "code"

    @classmethod
    def of(cls, pairing) -> "PairingInfo | None":
        """From the core's pairing object (anything with `state`, `code`, `qr_url`), or None."""
        if pairing is None:
            return None
        return cls(getattr(pairing, "code", "") or "", getattr(pairing, "qr_url", "") or "",
                   getattr(pairing, "state", "code") or "code")


PAIRING_STATES = {"connecting": "unpaired.connecting", "refused": "unpaired.stopped", "revoked": "unpaired.stopped",
                  "retired": "unpaired.retired", "unpaired": "unpaired.ask"}


@dataclass(frozen=True)
class Status:
    """The quiet indicator's inputs, from the core's snapshot."""

    online: bool
    pending: int
    quarantined: int
    capacity: int
    alarms: tuple[str, ...] = ()
    last_error: str = ""
    problem: str = ""  # the core's `connection_problem` (why it is not connected), "" when none

    @classmethod
    def of(cls, snap: Snapshot) -> "Status":
        return cls(snap.online, snap.pending, snap.quarantined, snap.capacity, snap.alarms, snap.last_error,
                   snap.problem or "")


class Screen(str, Enum):
    UNPAIRED = "unpaired"
    IDLE = "idle"
    CASE = "case"
    REASONS = "reasons"
    THANKS = "thanks"
    RATED_ELSEWHERE = "rated_elsewhere"
    UNAVAILABLE = "unavailable"
    PIN = "pin"
    MAINTENANCE = "maintenance"
    FALLBACK = "fallback"


_BY_PHASE = {Phase.IDLE: Screen.IDLE, Phase.CASE: Screen.CASE, Phase.REASONS: Screen.REASONS,
             Phase.THANKS: Screen.THANKS, Phase.RATED_ELSEWHERE: Screen.RATED_ELSEWHERE,
             Phase.UNAVAILABLE: Screen.UNAVAILABLE}
# where the hidden maintenance gesture works: every screen but the maintenance screens themselves
GESTURE_SCREENS = tuple(s for s in Screen if s not in (Screen.PIN, Screen.MAINTENANCE))


def screen_for(state: State, pairing: PairingInfo | None, maintenance: Screen | None = None,
               previous: Screen | None = None) -> Screen:
    """Which screen shows `state`. Maintenance (PIN or panel) overlays everything while open.

    COMMITTING lasts a few milliseconds (the core commits before it tells the views): the screen
    the citizen pressed on stays, its buttons disabled.
    """
    if maintenance is not None:
        return maintenance
    if pairing is not None:
        return Screen.UNPAIRED
    if state.phase == Phase.COMMITTING:
        return previous if previous in (Screen.CASE, Screen.REASONS, Screen.IDLE) else Screen.IDLE
    return _BY_PHASE.get(state.phase, Screen.IDLE)


def accepts_input(state: State) -> bool:
    return state.phase != Phase.COMMITTING


def staff_rating_offered(state: State) -> bool:
    """The idle screen shows level buttons when the core would take them as a staff rating."""
    return state.phase == Phase.IDLE and state.settings.staff_rating_when_idle and state.staff is not None


def open_case_waiting(state: State) -> bool:
    """Idle, but the case is still open and unrated at the center (its screen timed out): a press rates it."""
    return (state.phase == Phase.IDLE and state.case is not None and not state.case_rated
            and not state.case_closed)


def idle_levels(state: State) -> str:
    """What a level button on the idle screen would rate, as the core would take it: "case", "staff" or ""."""
    if open_case_waiting(state):
        return "case"
    return "staff" if staff_rating_offered(state) else ""


def staff_line(t: Translator, staff: Staff) -> str:
    return t("case.staff", name=staff.name, number=staff.number) if staff.number else \
        t("case.staff_plain", name=staff.name)


def window_title(t: Translator, state: State, window_id: str, bound_name: str = "") -> str:
    """The duty feed's window name, else the binding's, else "W01 号窗口" (always the window served now)."""
    return state.window_name or bound_name or t("window.default", window=window_id)


def status_text(t: Translator, s: Status) -> str:
    parts = [t("status.online") if s.online else t("status.offline")]
    if s.pending:
        parts.append(t("status.pending", n=s.pending))
    if s.quarantined:
        parts.append(t("status.quarantined", n=s.quarantined))
    return SEP.join(parts)


def staff_qr_url(template: str, staff: Staff | None) -> str:
    """The per-staff static QR (人员评价), "one person, one code"; empty when not configured."""
    if not template or staff is None:
        return ""
    return template.replace("{staff}", staff.id)


def pages(reasons: Sequence[Reason], per_page: int) -> list[tuple[Reason, ...]]:
    per_page = max(1, per_page)
    return [tuple(reasons[i:i + per_page]) for i in range(0, len(reasons), per_page)] or [()]


def maintenance_rows(t: Translator, *, device_id: str, window: str, host: str, port: int, status: Status,
                     network: Iterable[str], ui_errors: int, problem: str | None = None,
                     firmware: str = "") -> list[tuple[str, str]]:
    """(label, value) lines of the maintenance panel; `problem` is the core's `connection_problem`."""
    broker = t("maint.connected" if status.online else "maint.disconnected", host=host, port=port)
    return [
        (t("maint.device"), device_id),
        (t("maint.firmware"), firmware),
        (t("maint.window"), window),
        (t("maint.broker"), broker),
        (t("maint.connection"), problem or t("maint.none")),
        (t("maint.outbox"), t("maint.outbox_value", pending=status.pending, capacity=status.capacity)),
        (t("maint.quarantine"), str(status.quarantined)),
        (t("maint.alarms"), ", ".join(status.alarms) or t("maint.none")),
        (t("maint.last_error"), status.last_error or t("maint.none")),
        (t("maint.network"), "; ".join(network) or t("maint.none")),
        (t("maint.ui_errors"), str(ui_errors)),
    ]
