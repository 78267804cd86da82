# Wall time and record ids on a board: RFC 3339 local time with the configured offset, UUIDv7.
import time

try:
    from os import urandom
except ImportError:  # the WebAssembly port has none
    import random

    def urandom(n):
        return bytes(random.getrandbits(8) for _ in range(n))

EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0  # ports whose epoch is 2000
VALID_AFTER = 1767225600  # 2026-01-01: a board that never had its clock set is still in 2000/1970
_last = [0, 0]


def unix():
    return time.time() + EPOCH_OFFSET


def clock_ok():
    return unix() >= VALID_AFTER


def stamp(offset_min=480, now=None):
    """`2026-03-02T09:19:33.512+08:00`: local time at `offset_min` minutes east of UTC."""
    t = unix() if now is None else now
    ms = int((t - int(t)) * 1000) if isinstance(t, float) else time.ticks_ms() % 1000
    y, mo, d, h, mi, s = time.gmtime(int(t) + offset_min * 60 - EPOCH_OFFSET)[:6]
    sign = "+" if offset_min >= 0 else "-"
    o = abs(offset_min)
    return "%04d-%02d-%02dT%02d:%02d:%02d.%03d%s%02d:%02d" % (y, mo, d, h, mi, s, ms, sign, o // 60, o % 60)


def uuid7(now=None):
    """(text, 16 bytes): 48-bit Unix milliseconds, version 7, variant 10, random bits."""
    t = unix() if now is None else now
    ms = int(t * 1000)
    if ms <= _last[0]:  # same millisecond (or a clock step back): keep ids increasing
        ms = _last[0] + 1
    _last[0] = ms
    b = bytearray(urandom(16))
    for i in range(6):
        b[i] = (ms >> (40 - 8 * i)) & 0xFF
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    h = b.hex() if hasattr(b, "hex") else "".join("%02x" % x for x in b)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:]), bytes(b)


def id_bytes(text):
    """The 16 bytes of a UUID given as text (a receipt's id); None if it is not one."""
    try:
        b = bytes.fromhex(text.replace("-", ""))
    except (ValueError, AttributeError):
        return None
    return b if len(b) == 16 else None


def id_text(b):
    h = "".join("%02x" % x for x in b)
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def parse(ts):
    """Epoch seconds of an RFC 3339 time (the schema's form); None if it cannot be read."""
    try:
        y, mo, d = int(ts[0:4]), int(ts[5:7]), int(ts[8:10])
        h, mi, s = int(ts[11:13]), int(ts[14:16]), int(ts[17:19])
        rest = ts[19:]
        while rest[:1] in ".0123456789" and rest:
            rest = rest[1:]
        off = 0 if rest == "Z" else (1 if rest[0] == "+" else -1) * (int(rest[1:3]) * 60 + int(rest[4:6]))
    except (ValueError, IndexError):
        return None
    days = _days(y, mo, d)
    return days * 86400 + h * 3600 + mi * 60 + s - off * 60


def _days(y, m, d):
    """Days since 1970-01-01 (proleptic Gregorian)."""
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468
