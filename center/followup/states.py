"""The follow-up's states, as a pure step: no clock, no store.

    open ──contact──▶ contacted ──answer──▶ answered ──rectify──▶ rectified ──close──▶ closed
                                                │                                        ▲   │
                                                └────────────────close───────────────────┘   │
                                answered ◀──────────────────reopen─────────────────────────────┘

- `contact`: the citizen was reached and the complaint verified (联系核实); stops the 1-day clock.
- `answer`: the citizen was given an answer (答复); needs a note saying what; stops the 5-day clock.
- `rectify`: the cause was put right (整改); needs a note saying how; stops the 15-day clock.
- `close`: the supervisor closes it, after a rectification or straight after the answer when nothing needs
  putting right (then the 15-day clock stops too).
- `reopen`: a closed follow-up goes back to `answered` (the rectification was not enough); needs a note;
  the rectification and closing times are cleared, the clocks' deadlines stay as they were.

Any other step is refused (`IllegalStep`). Every step is an `Entry` in the history: who, when, note.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

STATES = ("open", "contacted", "answered", "rectified", "closed")
ACTIONS = ("contact", "answer", "rectify", "close", "reopen")
# action → (states it may start from, state it leads to)
STEPS: dict[str, tuple[tuple[str, ...], str]] = {
    "contact": (("open",), "contacted"),
    "answer": (("contacted",), "answered"),
    "rectify": (("answered",), "rectified"),
    "close": (("answered", "rectified"), "closed"),
    "reopen": (("closed",), "answered"),
}
NEEDS_NOTE = {"answer", "rectify", "reopen"}
STAMP = {"contact": "contacted_at", "answer": "answered_at", "rectify": "rectified_at", "close": "closed_at"}
MAX_NOTE = 2000
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


class IllegalStep(ValueError):
    """A step the follow-up's state does not allow, or one without its required note."""


@dataclass(frozen=True)
class Followup:
    """The part of a follow-up the steps change."""
    state: str = "open"
    contacted_at: float | None = None
    answered_at: float | None = None
    rectified_at: float | None = None
    closed_at: float | None = None
    updated: float = 0.0
    updated_by: str = ""


@dataclass(frozen=True)
class Entry:
    """One line of a follow-up's history."""
    at: float
    who: str
    action: str      # one of ACTIONS, or `note`, or `opened`
    text: str = ""


def clean_note(text: str) -> str:
    """A note as kept: control and bidirectional-override characters removed (line breaks kept), trimmed."""
    text = _CONTROL.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).strip()
    if len(text) > MAX_NOTE:
        raise IllegalStep(f"a note is at most {MAX_NOTE} characters")
    return text


def allowed(state: str) -> list[str]:
    """The actions a follow-up in `state` may take."""
    return [a for a in ACTIONS if state in STEPS[a][0]]


def step(fu: Followup, action: str, who: str, now: float, note: str = "") -> tuple[Followup, Entry]:
    """The follow-up after `action` by `who` at `now`, and its history entry; IllegalStep when refused."""
    if action not in STEPS:
        raise IllegalStep(f"unknown action {action[:20]!r}")
    if not who:
        raise IllegalStep("a step needs who takes it")
    sources, target = STEPS[action]
    if fu.state not in sources:
        raise IllegalStep(f"cannot {action} a follow-up that is {fu.state}")
    note = clean_note(note)
    if action in NEEDS_NOTE and not note:
        raise IllegalStep(f"{action} needs a note")
    changes: dict = {"state": target, "updated": now, "updated_by": who}
    if action == "reopen":
        changes.update(rectified_at=None, closed_at=None)
    else:
        changes[STAMP[action]] = now
    return replace(fu, **changes), Entry(now, who, action, note)


def note_entry(who: str, now: float, text: str) -> Entry:
    """A free note (any state, closed included): IllegalStep when empty."""
    text = clean_note(text)
    if not text or not who:
        raise IllegalStep("a note needs text and who writes it")
    return Entry(now, who, "note", text)
