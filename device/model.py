"""Domain values the core works with: cases, staff, the reason catalog (levels and channels: `protocol.values`).

Built from validated messages (`protocol.codec.decode`); frozen, so the state machine can hold them.
"""
from __future__ import annotations

from dataclasses import dataclass


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
