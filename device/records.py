"""Builds the outbound records (ratings, unrated events) from what the state machine decided."""
from __future__ import annotations

from dataclasses import dataclass

from device.machine import RatingDraft
from device.model import Case
from protocol import VERSION


@dataclass(frozen=True)
class Origin:
    """Who is speaking: the device and the window it serves."""

    center: str
    window: str
    device: str


def rating(draft: RatingDraft, origin: Origin, rid: str, seq: int, ts: str) -> dict:
    """The rating message: level by name, the three correspondences, reasons with their catalog."""
    msg = {"v": VERSION, "type": "rating", "id": rid, "device": origin.device, "center": origin.center,
           "window": origin.window, "seq": seq, "ts": ts, "kind": draft.kind, "level": draft.level.value,
           "channel": draft.channel.value}
    if draft.case is not None:
        msg.update(case=draft.case.id, item_code=draft.case.item_code, applicant=draft.case.applicant_token)
    if draft.staff is not None:
        msg["staff"] = draft.staff.id
    if draft.reasons:
        msg["reasons"] = {"catalog": draft.catalog_version, "codes": list(draft.reasons)}
    return msg


def unrated(case: Case, origin: Origin, rid: str, seq: int, ts: str) -> dict:
    """A case closed at the center without a rating: the cue for an SMS follow-up."""
    return {"v": VERSION, "type": "event", "id": rid, "device": origin.device, "center": origin.center,
            "window": origin.window, "seq": seq, "ts": ts, "event": "unrated", "case": case.id,
            "staff": case.staff.id, "applicant": case.applicant_token}


def alarm(code: str, detail: str, origin: Origin, rid: str, ts: str, cleared: bool = False) -> dict:
    return {"v": VERSION, "type": "event", "id": rid, "device": origin.device, "center": origin.center,
            "window": origin.window, "ts": ts, "event": "alarm_cleared" if cleared else "alarm",
            "alarm": code, "detail": detail[:500]}
