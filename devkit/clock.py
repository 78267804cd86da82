"""A monotonic clock moved by hand: pass it as a `clock` (the Terminal's, a driver's key clock)."""
from __future__ import annotations


class FakeClock:
    """Callable like `time.monotonic`; `advance(dt)` moves it."""

    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> float:
        self.t += dt
        return self.t
