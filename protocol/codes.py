"""Numeric codes exist only at the edge to a platform; inside, levels and channels are names.

The texts disagree (see docs/protocol.md): GB/T 39046-2020 Table A.8 numbers 1 = 非常满意 … 5 = 非常不满意,
provincial 好差评 interfaces number 1 = 非常不满意 … 5 = 非常满意. Which one applies is configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from protocol.values import LEVELS, Channel, Level

LEVEL_SCHEMES: dict[str, dict[Level, int]] = {
    "gbt39046": {lvl: i + 1 for i, lvl in enumerate(LEVELS)},
    "provincial": {lvl: 5 - i for i, lvl in enumerate(LEVELS)},
}

# Most platforms' `pf` codes; one province uses 6 for SMS. Override per center in [codes] channels.
DEFAULT_CHANNELS: dict[Channel, int] = {
    Channel.TOUCH: 4, Channel.KEYS: 4, Channel.QR: 3, Channel.STAFF_QR: 3, Channel.HALL_QR: 3,
    Channel.SMS: 7, Channel.OTHER: 5,
}


@dataclass(frozen=True)
class CodeMap:
    levels: Mapping[Level, int]
    channels: Mapping[Channel, int]

    @classmethod
    def create(cls, scheme: str = "gbt39046", channels: Mapping[str, int] | None = None) -> "CodeMap":
        if scheme not in LEVEL_SCHEMES:
            raise ValueError(f"unknown level scheme {scheme!r}; known: {', '.join(LEVEL_SCHEMES)}")
        chan = dict(DEFAULT_CHANNELS)
        for name, code in (channels or {}).items():
            try:
                chan[Channel(name)] = code
            except ValueError:
                raise ValueError(f"unknown channel {name!r}; known: {', '.join(c.value for c in Channel)}") from None
        return cls(LEVEL_SCHEMES[scheme], chan)

    def level_code(self, level: Level | str) -> int:
        return self.levels[Level(level)]

    def level_of(self, code: int) -> Level:
        for level, c in self.levels.items():
            if c == code:
                return level
        raise ValueError(f"no level has code {code}")

    def channel_code(self, channel: Channel | str) -> int:
        return self.channels[Channel(channel)]
