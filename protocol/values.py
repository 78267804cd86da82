"""The wire's value types: the five levels and the rating channels, by name (their schema enums).

Numbers exist only at export, through `protocol.codes`.
"""
from __future__ import annotations

from enum import Enum


class Level(str, Enum):
    """The five levels, by name."""

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
