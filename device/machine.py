"""The terminal's heart: a pure state machine. Events in, effects out, no I/O, no clock.

    idle ──case──▶ case ──good level──▶ committing ──committed──▶ thanks ──timeout──▶ idle
                    │  └──bad level──▶ reasons ──confirm──▶ committing
                    ├──closed at the center──▶ idle + Unrated effect (SMS follow-up)
                    ├──cleared (empty retained case)──▶ idle, no follow-up
                    └──rated on the phone──▶ rated_elsewhere ──timeout──▶ idle
    idle ──level, case still open (its screen timed out)──▶ that case's rating (as from the case screen)
    idle ──level (no open case, staff on duty, staff_rating_when_idle)──▶ staff rating (same path, no case)

The runtime (`device.terminal`) feeds events with the current monotonic time, carries out the
effects (commit to the outbox, publish an event) and feeds the results back (`Committed`).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Union

from device.model import Case, Catalog, Staff
from protocol.values import Channel, Level


RECENT = 64


class Phase(str, Enum):
    IDLE = "idle"
    CASE = "case"
    REASONS = "reasons"
    COMMITTING = "committing"
    THANKS = "thanks"
    RATED_ELSEWHERE = "rated_elsewhere"
    UNAVAILABLE = "unavailable"  # the rating could not be stored: ask the citizen to scan the QR


@dataclass(frozen=True)
class Settings:
    case_timeout_s: float = 120
    reasons_timeout_s: float = 60
    thanks_s: float = 5
    staff_rating_when_idle: bool = False  # off: at a case window anyone could add one every repeat_guard_s
    repeat_guard_s: float = 10  # after a rating, idle presses are taken as repeats for this long


# ---- events -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CaseOpened:
    case: Case
    already_rated: bool = False  # the outbox remembers rated cases across restarts
    qr: Any = None  # the rendered dynamic QR (opaque to the machine)


@dataclass(frozen=True)
class CaseClosed:
    case_id: str


@dataclass(frozen=True)
class CaseCleared:
    """The center cleared the window's retained case (an empty retained payload).

    Not a close: it says nothing about how the case ended (the center sends `closed` for that), so
    no `unrated` follow-up is emitted — a broker operator wiping retained messages must not send SMS.
    """


@dataclass(frozen=True)
class CaseRatedElsewhere:
    case_id: str
    channel: Channel = Channel.QR


@dataclass(frozen=True)
class DutyChanged:
    staff: Staff | None
    window_name: str = ""


@dataclass(frozen=True)
class CatalogChanged:
    catalog: Catalog


@dataclass(frozen=True)
class SettingsChanged:
    settings: Settings


@dataclass(frozen=True)
class LevelPressed:
    level: Level
    channel: Channel = Channel.TOUCH


@dataclass(frozen=True)
class ReasonToggled:
    code: str


@dataclass(frozen=True)
class ReasonsConfirmed:
    pass


@dataclass(frozen=True)
class Back:
    pass


@dataclass(frozen=True)
class Tick:
    pass


@dataclass(frozen=True)
class Committed:
    rating_id: str


@dataclass(frozen=True)
class CommitFailed:
    reason: str


Event = Union[CaseOpened, CaseClosed, CaseCleared, CaseRatedElsewhere, DutyChanged, CatalogChanged, SettingsChanged,
              LevelPressed, ReasonToggled, ReasonsConfirmed, Back, Tick, Committed, CommitFailed]


# ---- effects ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class RatingDraft:
    """Everything the citizen decided; the outbox adds id, sequence and wall time."""

    kind: str  # "case" | "staff"
    level: Level
    channel: Channel
    staff: Staff | None
    case: Case | None = None
    reasons: tuple[str, ...] = ()
    catalog_version: str = ""


@dataclass(frozen=True)
class CommitRating:
    draft: RatingDraft


@dataclass(frozen=True)
class EmitUnrated:
    case: Case


@dataclass(frozen=True)
class Ignored:
    """An input the machine refused; the runtime logs and counts it."""

    event: str
    reason: str


Effect = Union[CommitRating, EmitUnrated, Ignored]


# ---- state ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class State:
    phase: Phase = Phase.IDLE
    settings: Settings = field(default_factory=Settings)
    case: Case | None = None          # the case open at the window, if any
    case_closed: bool = False         # closed at the center while the citizen was still choosing reasons
    case_rated: bool = False          # rated here or elsewhere: one case, one rating
    qr: Any = None
    staff: Staff | None = None        # staff on duty
    window_name: str = ""
    catalog: Catalog | None = None
    kind: str = ""                    # what is being rated right now: "case" | "staff"
    level: Level | None = None
    channel: Channel | None = None
    selected: frozenset[str] = frozenset()
    deadline: float | None = None
    guard_until: float = 0.0
    last_rating_id: str = ""
    recently_rated: tuple[str, ...] = ()  # case ids rated here lately (the outbox remembers them longer)


def step(state: State, event: Event, now: float) -> tuple[State, list[Effect]]:
    """Apply one event at monotonic time `now`; return the new state and the effects to carry out."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        return state, [Ignored(type(event).__name__, "unknown event")]
    return handler(state, event, now)


def _ignore(state: State, event: Event, reason: str) -> tuple[State, list[Effect]]:
    return state, [Ignored(type(event).__name__, reason)]


def _to_idle(state: State) -> State:
    return replace(state, phase=Phase.IDLE, kind="", level=None, channel=None, selected=frozenset(),
                   deadline=None)


def _on_case_opened(s: State, e: CaseOpened, now: float):
    effects: list[Effect] = []
    if s.case is not None and s.case.id == e.case.id:
        return _ignore(s, e, "case already shown")  # retained message delivered again
    if s.phase in (Phase.REASONS, Phase.COMMITTING):
        return _ignore(s, e, "a citizen is still rating the previous case")
    if s.case is not None and not s.case_rated:
        effects.append(EmitUnrated(s.case))  # the center moved on without a rating
    if e.already_rated or e.case.id in s.recently_rated:
        s = replace(_to_idle(s), case=e.case, case_rated=True, case_closed=False, qr=None)
        return s, effects + [Ignored("CaseOpened", "case already rated")]
    s = replace(_to_idle(s), phase=Phase.CASE, case=e.case, case_rated=False, case_closed=False, qr=e.qr,
                deadline=now + s.settings.case_timeout_s, guard_until=0.0)
    return s, effects


def _on_case_closed(s: State, e: CaseClosed, now: float):
    if s.case is None or s.case.id != e.case_id:
        return _ignore(s, e, "not the open case")
    if s.phase in (Phase.REASONS, Phase.COMMITTING) and s.kind == "case":
        return replace(s, case_closed=True), []  # let the citizen finish
    effects: list[Effect] = [] if s.case_rated else [EmitUnrated(s.case)]
    if s.phase == Phase.CASE:
        s = _to_idle(s)
    return replace(s, case=None, case_rated=False, case_closed=False, qr=None), effects


def _on_case_cleared(s: State, e: CaseCleared, now: float):
    if s.case is None:
        return _ignore(s, e, "no open case")
    if s.phase in (Phase.REASONS, Phase.COMMITTING) and s.kind == "case":
        # Let the citizen finish; marked rated so that abandoning it owes no follow-up either.
        return replace(s, case_closed=True, case_rated=True), []
    if s.phase == Phase.CASE:
        s = _to_idle(s)
    return replace(s, case=None, case_rated=False, case_closed=False, qr=None), []


def _on_rated_elsewhere(s: State, e: CaseRatedElsewhere, now: float):
    if s.case is None or s.case.id != e.case_id:
        return _ignore(s, e, "not the open case")
    if s.phase == Phase.COMMITTING or s.case_rated:
        return replace(s, case_rated=True), []
    if s.kind == "staff":  # a staff rating is in progress: only remember the case is done
        return replace(s, case_rated=True), []
    s = replace(_to_idle(s), phase=Phase.RATED_ELSEWHERE, case_rated=True,
                deadline=now + s.settings.thanks_s)
    return s, []


def _on_duty(s: State, e: DutyChanged, now: float):
    return replace(s, staff=e.staff, window_name=e.window_name or s.window_name), []


def _on_catalog(s: State, e: CatalogChanged, now: float):
    selected = s.selected & e.catalog.codes()  # a code the new catalog dropped cannot stay chosen
    return replace(s, catalog=e.catalog, selected=selected), []


def _on_settings(s: State, e: SettingsChanged, now: float):
    return replace(s, settings=e.settings), []


def _start_rating(s: State, e: LevelPressed, kind: str, now: float):
    s = replace(s, kind=kind, level=e.level, channel=e.channel, selected=frozenset())
    if e.level.is_bad:
        return replace(s, phase=Phase.REASONS, deadline=now + s.settings.reasons_timeout_s), []
    return _commit(s)


def _commit(s: State):
    staff = s.case.staff if s.kind == "case" and s.case else s.staff
    draft = RatingDraft(kind=s.kind, level=s.level, channel=s.channel, staff=staff,
                        case=s.case if s.kind == "case" else None,
                        reasons=tuple(sorted(s.selected)),
                        catalog_version=s.catalog.version if s.selected and s.catalog else "")
    return replace(s, phase=Phase.COMMITTING, deadline=None), [CommitRating(draft)]


def _on_level(s: State, e: LevelPressed, now: float):
    if s.phase == Phase.CASE:
        return _start_rating(s, e, "case", now)
    if s.phase == Phase.IDLE:
        if s.case is not None and not s.case_rated and not s.case_closed:
            # The case screen timed out but the case is still open at the center: the press is the
            # citizen's rating of that case (a staff rating here would leave the case "unrated" → SMS).
            return _start_rating(s, e, "case", now)
        if now < s.guard_until:
            return _ignore(s, e, "repeat press after a rating")
        if not s.settings.staff_rating_when_idle:
            return _ignore(s, e, "no open case and staff ratings are off")
        if s.staff is None:
            return _ignore(s, e, "no open case and no staff on duty")
        return _start_rating(s, e, "staff", now)
    return _ignore(s, e, f"not taking levels in {s.phase.value}")


def _on_reason(s: State, e: ReasonToggled, now: float):
    if s.phase != Phase.REASONS:
        return _ignore(s, e, "no reasons shown")
    if s.catalog is None or e.code not in s.catalog.codes():
        return _ignore(s, e, "code not in the current catalog")
    return replace(s, selected=s.selected ^ {e.code}, deadline=now + s.settings.reasons_timeout_s), []


def _on_confirm(s: State, e: ReasonsConfirmed, now: float):
    if s.phase != Phase.REASONS:
        return _ignore(s, e, "no reasons shown")
    if s.catalog is None:
        return _ignore(s, e, "no reason catalog from the center yet")
    if not s.selected:
        return _ignore(s, e, "a bad rating needs at least one reason")
    return _commit(s)


def _back_to_case_or_idle(s: State, now: float) -> State:
    if s.kind == "case" and s.case is not None and not s.case_rated and not s.case_closed:
        return replace(_to_idle(s), phase=Phase.CASE, deadline=now + s.settings.case_timeout_s)
    return _to_idle(s)


def _on_back(s: State, e: Back, now: float):
    if s.phase != Phase.REASONS:
        return _ignore(s, e, "nothing to go back from")
    return _close_if_pending(_back_to_case_or_idle(s, now))


def _close_if_pending(s: State) -> tuple[State, list[Effect]]:
    """A case closed at the center while the citizen chose reasons ends here."""
    if s.case is not None and s.case_closed and s.phase != Phase.REASONS:
        effects: list[Effect] = [] if s.case_rated else [EmitUnrated(s.case)]
        return replace(s, case=None, case_closed=False, case_rated=False, qr=None), effects
    return s, []


def _on_tick(s: State, e: Tick, now: float):
    if s.deadline is None or now < s.deadline:
        return s, []
    if s.phase == Phase.REASONS:
        return _close_if_pending(_back_to_case_or_idle(s, now))
    if s.phase == Phase.UNAVAILABLE:
        return _close_if_pending(_back_to_case_or_idle(s, now))
    return _close_if_pending(_to_idle(s))


def _on_committed(s: State, e: Committed, now: float):
    if s.phase != Phase.COMMITTING:
        return _ignore(s, e, "no commit pending")
    rated = s.case_rated or s.kind == "case"
    recent = (s.recently_rated + (s.case.id,))[-RECENT:] if s.kind == "case" and s.case else s.recently_rated
    s = replace(s, phase=Phase.THANKS, case_rated=rated, deadline=now + s.settings.thanks_s, recently_rated=recent,
                guard_until=now + s.settings.thanks_s + s.settings.repeat_guard_s, last_rating_id=e.rating_id,
                selected=frozenset())
    return _close_if_pending(s)


def _on_commit_failed(s: State, e: CommitFailed, now: float):
    if s.phase != Phase.COMMITTING:
        return _ignore(s, e, "no commit pending")
    return replace(s, phase=Phase.UNAVAILABLE, deadline=now + s.settings.thanks_s), []


_HANDLERS = {
    CaseOpened: _on_case_opened, CaseClosed: _on_case_closed, CaseCleared: _on_case_cleared,
    CaseRatedElsewhere: _on_rated_elsewhere,
    DutyChanged: _on_duty, CatalogChanged: _on_catalog, SettingsChanged: _on_settings,
    LevelPressed: _on_level, ReasonToggled: _on_reason, ReasonsConfirmed: _on_confirm, Back: _on_back,
    Tick: _on_tick, Committed: _on_committed, CommitFailed: _on_commit_failed,
}
