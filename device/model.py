"""Domain values the core works with: levels, channels, cases, staff, the reason catalog.

Built from validated messages (`device.messages.decode`); frozen, so the state machine can hold them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Level(str, Enum):
    """The five levels, by name. Numbers exist only at export, through `device.codes`."""

    VERY_SATISFIED = "very_satisfied"
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    DISSATISFIED = "dissatisfied"
    VERY_DISSATISFIED = "very_dissatisfied"

    @property
    def is_bad(self) -> bool:
        """差评: needs at least one reason from the center's catalog."""
        return self in (Level.DISSATISFIED, Level.VERY_DISSATISFIED)

    @property
    def zh(self) -> str:
        return _ZH[self]


_ZH = {Level.VERY_SATISFIED: "非常满意", Level.SATISFIED: "满意", Level.BASICALLY_SATISFIED: "基本满意",
       Level.DISSATISFIED: "不满意", Level.VERY_DISSATISFIED: "非常不满意"}
LEVELS: tuple[Level, ...] = tuple(Level)


class Channel(str, Enum):
    TOUCH = "touch"
    KEYS = "keys"
    QR = "qr"
    SMS = "sms"
    STAFF_QR = "staff_qr"
    HALL_QR = "hall_qr"
    OTHER = "other"


@dataclass(frozen=True)
class Staff:
    id: str
    name: str
    number: str = ""
    photo: str = ""

    @classmethod
    def from_msg(cls, d: dict) -> "Staff":
        return cls(d["id"], d["name"], d.get("number", ""), d.get("photo", ""))


@dataclass(frozen=True)
class Case:
    """One case at one window, as the center described it. No personal data beyond a masked name."""

    id: str
    item_code: str
    item_name: str
    staff: Staff
    applicant_token: str
    applicant_display: str
    rating_url: str = ""

    @classmethod
    def from_msg(cls, d: dict) -> "Case":
        return cls(id=d["case"]["id"], item_code=d["case"]["item_code"], item_name=d["case"]["item_name"],
                   staff=Staff.from_msg(d["staff"]), applicant_token=d["applicant"]["token"],
                   applicant_display=d["applicant"]["display"], rating_url=d.get("rating_url", ""))


@dataclass(frozen=True)
class Reason:
    code: str
    zh: str
    en: str = ""
    group: str = ""


@dataclass(frozen=True)
class Catalog:
    version: str
    reasons: tuple[Reason, ...]

    @classmethod
    def from_msg(cls, d: dict) -> "Catalog":
        return cls(d["version"], tuple(Reason(r["code"], r["zh"], r.get("en", ""), r.get("group", ""))
                                       for r in d["reasons"]))

    def codes(self) -> frozenset[str]:
        return frozenset(r.code for r in self.reasons)
