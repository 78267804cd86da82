"""Time-ordered record ids (UUIDv7, RFC 9562) and wall-clock stamps, for every record maker (terminals, the center)."""
from __future__ import annotations

import os
import time
import uuid
from datetime import datetime


def uuid7(ms: int | None = None) -> str:
    """A UUIDv7: 48-bit Unix milliseconds, then 74 random bits."""
    ms = time.time_ns() // 1_000_000 if ms is None else ms
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & (2**48 - 1)) << 80
    value |= 0x7 << 76                                  # version 7
    value |= ((rand >> 62) & 0xFFF) << 64               # rand_a, 12 bits
    value |= 0b10 << 62                                 # RFC 9562 variant
    value |= rand & (2**62 - 1)                         # rand_b, 62 bits
    return str(uuid.UUID(int=value))



def wall_time() -> str:
    """Local wall time with its UTC offset, millisecond precision (RFC 3339)."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")
