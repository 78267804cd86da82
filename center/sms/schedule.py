"""When an SMS may go out: after a delay, only inside the center's sending hours, retries backing off.

Pure: no I/O, no clock. Times are epoch seconds (float); the sending window is wall-clock time in the
policy's time zone, `[start, end)` every day. The result is always the earliest allowed instant at or
after the asked one, also on days when daylight saving time shifts the clock (not in China, but the
policy takes any IANA zone).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time as wall_time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_HHMM = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
_LOOKAHEAD_S = 4 * 86400   # an opening is always within this of any instant (a window may fall in a gap)


@dataclass(frozen=True)
class SmsPolicy:
    """The center's SMS rules (defaults as the issue states them)."""
    delay_s: float = 600             # after the case closed unrated
    start: str = "08:00"             # sending hours, local wall clock: [start, end)
    end: str = "20:00"
    tz: str = "Asia/Shanghai"
    link_ttl_s: float = 7 * 86400    # the link lives this long after the SMS is due
    max_attempts: int = 8            # gateway attempts before the job is marked failed
    retry_base_s: float = 30         # first retry after this, doubling ...
    retry_max_s: float = 3600        # ... up to this

    def __post_init__(self) -> None:
        problems = []
        for name in ("start", "end"):
            if not isinstance(getattr(self, name), str) or not _HHMM.fullmatch(getattr(self, name)):
                problems.append(f"{name} must be HH:MM (00:00-23:59), got {getattr(self, name)!r}")
        if not problems and self.start >= self.end:
            problems.append(f"start {self.start} must be before end {self.end}")
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            problems.append(f"unknown time zone {self.tz!r}")
        if not self.delay_s >= 0:
            problems.append("delay_s must be >= 0")
        if not self.link_ttl_s > 0:
            problems.append("link_ttl_s must be > 0")
        if not (isinstance(self.max_attempts, int) and self.max_attempts >= 1):
            problems.append("max_attempts must be an integer >= 1")
        if not self.retry_base_s > 0:
            problems.append("retry_base_s must be > 0")
        if not self.retry_max_s >= self.retry_base_s:
            problems.append("retry_max_s must be >= retry_base_s")
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)   # ZoneInfo caches instances

    @property
    def start_time(self) -> wall_time:
        return wall_time.fromisoformat(self.start)

    @property
    def end_time(self) -> wall_time:
        return wall_time.fromisoformat(self.end)


def in_window(ts: float, policy: SmsPolicy) -> bool:
    """Whether the local wall-clock time of `ts` lies in [start, end)."""
    wall = datetime.fromtimestamp(ts, policy.zone).time()
    return policy.start_time <= wall < policy.end_time


def next_open(ts: float, policy: SmsPolicy) -> float:
    """The earliest instant ≥ ts inside the sending window (ts itself when it already is)."""
    if in_window(ts, policy):
        return ts
    zone = policy.zone
    # The allowed instants form intervals; each begins either where the wall clock reaches `start` or
    # where a UTC offset change jumps the wall clock into the window. Collect both kinds and take the first.
    candidates = [c for c in (*_start_instants(ts, policy), *_transitions(ts, ts + _LOOKAHEAD_S, zone))
                  if c >= ts and in_window(c, policy)]
    if not candidates:   # cannot happen with a valid policy and a real zone
        raise ValueError(f"no sending window within {_LOOKAHEAD_S} s of {ts}")
    return min(candidates)


def due_at(closed_at: float, policy: SmsPolicy) -> float:
    """When the follow-up SMS for a case closed at `closed_at` may go out."""
    return next_open(closed_at + policy.delay_s, policy)


def backoff_s(attempt: int, policy: SmsPolicy) -> float:
    """The wait after the `attempt`-th failed try (1, 2, ...): base·2^(attempt-1), capped. No jitter:
    the worker sends one job at a time, so there is no herd to spread."""
    return min(policy.retry_base_s * 2.0 ** min(max(attempt, 1) - 1, 64), policy.retry_max_s)


def retry_at(attempt: int, now: float, policy: SmsPolicy) -> float:
    """When to try again after the `attempt`-th failed try at `now`, inside the sending window."""
    return next_open(now + backoff_s(attempt, policy), policy)


def _start_instants(ts: float, policy: SmsPolicy) -> list[float]:
    """Every instant whose local wall clock reads exactly `start`, on the days around ts."""
    zone = policy.zone
    today: date = datetime.fromtimestamp(ts, zone).date()
    out = []
    for offset in range(-1, _LOOKAHEAD_S // 86400 + 1):
        naive = datetime.combine(today + timedelta(days=offset), policy.start_time)
        for fold in (0, 1):   # an hour repeated when the clock goes back has two such instants
            instant = naive.replace(tzinfo=zone, fold=fold).timestamp()
            if datetime.fromtimestamp(instant, zone).replace(tzinfo=None) == naive:   # not in a gap
                out.append(instant)
    return out


def _transitions(lo: float, hi: float, zone: ZoneInfo) -> list[float]:
    """The first instant after each UTC offset change in (lo, hi]; real zones change at most once in a
    few days, so a change between the ends is found by bisection."""
    def offset(x: float) -> timedelta | None:
        return datetime.fromtimestamp(x, zone).utcoffset()

    if offset(lo) == offset(hi):
        return []
    a, b = float(int(lo)), float(int(hi) + 1)    # offsets change on whole seconds
    while b - a > 1:
        mid = float(int((a + b) / 2))
        if offset(mid) == offset(a):
            a = mid
        else:
            b = mid
    return [b]
